/* commands.h -- the subcommands of bin/qh.  Each returns a process exit
 * status (0 success, 1 failure, 2 usage error); only main() exits. */
#ifndef QH_COMMANDS_H
#define QH_COMMANDS_H

int qh_cmd_info(int argc, char **argv);      /* experiments/cli/cmd_info.c */
int qh_cmd_tokenize(int argc, char **argv);  /* experiments/cli/cmd_tokenize.c */
int qh_cmd_ppl(int argc, char **argv);       /* experiments/cli/cmd_ppl.c */
int qh_cmd_tasks(int argc, char **argv);     /* experiments/cli/cmd_tasks.c */
int qh_cmd_methods(int argc, char **argv);   /* experiments/cli/cmd_methods.c */
int qh_cmd_layer(int argc, char **argv);     /* experiments/cli/cmd_layer.c */
int qh_cmd_run(int argc, char **argv);       /* experiments/cli/cmd_run.c */
int qh_cmd_report(int argc, char **argv);    /* experiments/cli/cmd_report.c */
int qh_cmd_merge(int argc, char **argv);     /* experiments/cli/cmd_merge.c */
int qh_cmd_status(int argc, char **argv);    /* experiments/cli/cmd_status.c */
int qh_cmd_quantize(int argc, char **argv);  /* experiments/cli/cmd_quantize.c */
int qh_cmd_sensitivity(int argc, char **argv); /* experiments/cli/cmd_sensitivity.c */

#endif
