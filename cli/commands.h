/*
 * Subcommands that live in their own files under cli/; cli/hone.c dispatches to them.
 * Each takes the arguments after the subcommand's name and returns the exit status:
 * 0 success, 1 an error in the input or the run, 2 a usage error.
 */
#ifndef HONE_CLI_COMMANDS_H
#define HONE_CLI_COMMANDS_H

/* hone eval CKPT --task ppl|mc|gen --data FILE ... */
int hn_cmd_eval(int argc, char** argv);
/* hone generate CKPT --prompt TEXT ... */
int hn_cmd_generate(int argc, char** argv);

/* hone inspect FILE */
int hn_cmd_inspect(int argc, char** argv);
/* hone import SRC -o OUT.h5 */
int hn_cmd_import(int argc, char** argv);
/* hone mask build|inspect ... */
int hn_cmd_mask(int argc, char** argv);
/* hone export CKPT --format delta --base BASE -o OUT.h5 */
int hn_cmd_export(int argc, char** argv);
/* hone apply BASE DELTA... -o OUT.h5 */
int hn_cmd_apply(int argc, char** argv);
/* hone edit CKPT --subject S --prompt P --target O --cov-data DATA -o OUT.h5 */
int hn_cmd_edit(int argc, char** argv);
/* cli/bench.c */
int hn_cmd_bench(int argc, char** argv);

#endif
