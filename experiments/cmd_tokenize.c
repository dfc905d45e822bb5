/* cmd_tokenize.c -- placeholder until the command lands. */
#include <stdio.h>
#include "commands.h"
int qh_cmd_tokenize(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "qh tokenize: not implemented yet\n");
    return 1;
}
