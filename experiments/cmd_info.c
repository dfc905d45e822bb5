/* cmd_info.c -- placeholder until the command lands. */
#include <stdio.h>
#include "commands.h"
int qh_cmd_info(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "qh info: not implemented yet\n");
    return 1;
}
