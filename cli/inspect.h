/* `hone inspect FILE`: a readable summary of a checkpoint or a safetensors file. */
#ifndef HONE_CLI_INSPECT_H
#define HONE_CLI_INSPECT_H

int hn_cmd_inspect(int argc, char** argv);

#endif
