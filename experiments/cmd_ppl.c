/* cmd_ppl.c -- placeholder until the command lands. */
#include <stdio.h>
#include "commands.h"
int qh_cmd_ppl(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "qh ppl: not implemented yet\n");
    return 1;
}
