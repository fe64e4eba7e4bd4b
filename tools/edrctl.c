/* edrctl.c: the client's entry point (schemas/README.md §5). The subcommand
 * comes first; its flags follow it, the common settings (worker/config.h,
 * the same variables and flags as edr-worker) among them. What the common
 * parser does not know is handed to the subcommand. */
#include "tools/edrctl.h"

#include "worker/config_parse.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: edrctl SUBCOMMAND [flags]\n"
            "\n"
            "Subcommands:\n"
            "  publish negotiated|renewed|expired --party ID --address URL\n"
            "          --query SUM --policy SUM [--edr JSON | --edr @FILE]\n"
            "          [--transfer-id ID]\n"
            "      produce one event; prints {\"partition\": p, \"offset\": "
            "o}\n"
            "      (edrctl publish --help for every flag)\n"
            "  get --party ID --address URL --query SUM --policy SUM\n"
            "      [--wait-ms N] [--min-position P:O]...\n"
            "  transfer-id --party ID --address URL --query SUM --policy "
            "SUM\n"
            "      [--wait-ms N] [--min-position P:O]...\n"
            "  get-by-transfer-id --transfer-id T [--wait-ms N]\n"
            "      [--min-position P:O]...\n"
            "  count [--party-substring S] [--transfer-id T] [--asset-id A]\n"
            "      [--asset-prefix P]\n"
            "  list [--party-substring S] [--transfer-id T] [--asset-id A]\n"
            "      [--asset-prefix P] [--limit N] [--cursor C]\n"
            "  ping\n"
            "      ask a worker over Redis; prints the reply's result as "
            "JSON\n"
            "  invalidate [--party-substring S] [--asset-id A] [--asset-prefix "
            "P]\n"
            "      [--transfer-id T] [--dry-run]\n"
            "      (at least one filter) evict every matching entry on every "
            "replica:\n"
            "      one edr.expired per entry, with its transfer id; prints\n"
            "      {\"matched\": n, \"published\": n}\n"
            "\n");
    config_print_settings(out);
    fprintf(out, "\nExit codes: 0 ok, 1 not found, 2 usage error, 3 error "
                 "or timeout.\n");
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct config_rest rest = {0};
    char errstr[512];
    int code = EDRCTL_USAGE;

    if (argc < 2) {
        usage(stderr);
        return EDRCTL_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EDRCTL_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("edrctl %s (librdkafka %s)\n", EDR_VERSION,
               rd_kafka_version_str());
        return EDRCTL_OK;
    }

    /* argv + 1: the subcommand takes the place of the program name, so
     * rest.argv[0] is the subcommand. */
    int rc = config_load(&cfg, CONFIG_CLIENT, argc - 1, argv + 1, &rest, errstr,
                         sizeof(errstr));
    if (rc != CONFIG_OK) {
        fprintf(stderr, "edrctl: %s\n", errstr);
        goto out;
    }
    if (strcmp(cmd, "publish") == 0) {
        code = edrctl_publish_main(&cfg, rest.argc, rest.argv);
    } else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "transfer-id") == 0 ||
               strcmp(cmd, "get-by-transfer-id") == 0 ||
               strcmp(cmd, "count") == 0 || strcmp(cmd, "list") == 0 ||
               strcmp(cmd, "ping") == 0) {
        code = edrctl_lookup_main(&cfg, cmd, rest.argc, rest.argv);
    } else if (strcmp(cmd, "invalidate") == 0) {
        code = edrctl_invalidate_main(&cfg, rest.argc, rest.argv);
    } else {
        fprintf(stderr,
                "edrctl: unknown subcommand \"%s\" (see edrctl "
                "--help)\n",
                cmd);
    }

out:
    config_rest_free(&rest);
    config_clear(&cfg);
    return code;
}
