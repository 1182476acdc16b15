/* Small file-system helpers shared by the commands that write folders. */
#ifndef HONE_FS_H
#define HONE_FS_H

/* create path and any missing parents (mkdir -p); HN_OK or HN_ERR */
int hn_mkdirs(const char* path);

#endif
