/*
 * jobs_int.h — internals shared by jobs/'s files. Never included from outside jobs/.
 */
#ifndef BATCHREP_JOBS_INT_H
#define BATCHREP_JOBS_INT_H

#include "jobs/jobs.h"

/* ---- a job's record beside the catalogue (recover.c) ------------------------------------ */

/* Writes <state>/jobs/<id>/job.json (folder 0700, file 0600, atomically): what the job's
   catalogue row is made from; after the row is in the catalogue. 0 or -JOBS_E_*. */
int jobs__record_write(const char *state_dir, const jobs_row *r, char *err, size_t err_len);
/* Removes a record written for a job that was not created after all (and its folder when
   empty). */
void jobs__record_remove(const char *state_dir, const char *id);
/* Puts back into the catalogue every job whose folder has a record and that the catalogue
   does not hold (lost, emptied, rebuilt), with the status its folder tells. 0 or <0. */
int jobs__store_import(jobs_store *s);
/* Renames a damaged catalogue (and its -wal, -shm) to <db_path>.damaged-<epoch ms>; the new
   name in out. 0 or -1. */
int jobs__move_aside(const char *db_path, char *out, size_t cap);

#endif
