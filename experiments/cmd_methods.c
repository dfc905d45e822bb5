/* cmd_methods.c -- placeholder until the command lands. */
#include <stdio.h>
#include "commands.h"
int qh_cmd_methods(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "qh methods: not implemented yet\n");
    return 1;
}
