/* edrctl_args.h: the flag scanner the edrctl subcommands share, so
 * "--name value" and "--name=value" mean the same in every subcommand. */
#ifndef EDR_TOOLS_EDRCTL_ARGS_H
#define EDR_TOOLS_EDRCTL_ARGS_H

/* Takes "--name value" or "--name=value" at argv[*i]: 1 when it matched
 * name (value in *out, *i moved past a separate value), 0 when argv[*i] is
 * another argument, -1 when the value is missing. */
int edrctl_take_flag(int argc, char **argv, int *i, const char *name,
                     const char **out);

#endif
