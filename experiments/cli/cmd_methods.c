/* cmd_methods.c -- `qh methods [NAME]`: prints the method table (name,
 * version, needs, summary, and each parameter with type, default, reference
 * value, range and doc), all read from the registry in core/qh_method.h. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "qh_method.h"

static const char *type_name(qh_param_type t)
{
    switch (t) {
    case QH_PARAM_INT: return "int";
    case QH_PARAM_DOUBLE: return "double";
    case QH_PARAM_BOOL: return "bool";
    case QH_PARAM_ENUM: return "enum";
    }
    return "?";
}

static void print_needs(uint32_t needs)
{
    const char *sep = "";
    printf("  needs:");
    if (needs & QH_NEEDS_HESSIAN) { printf("%s hessian", sep); sep = ","; }
    if (needs & QH_NEEDS_GRID) { printf("%s grid", sep); sep = ","; }
    if (needs & QH_NEEDS_RNG) { printf("%s rng", sep); sep = ","; }
    if (!needs) printf(" -");
    printf("\n");
}

static void print_method(const qh_method_type *m)
{
    printf("%s (version %u)%s\n", m->name, (unsigned)m->version,
           m->quantize_ref ? "  [has reference implementation]" : "");
    printf("  %s\n", m->summary ? m->summary : "");
    print_needs(m->needs);
    printf("  %-10s %-7s %-10s %-10s %-22s %s\n", "parameter", "type", "default", "reference",
           "range", "doc");
    for (const qh_param_desc *d = m->params; d && d->key; d++) {
        char def[64], range[96];
        qh_param_format_default(d, def, sizeof def);
        qh_param_format_range(d, range, sizeof range);
        /* "-": the default already computes what the authors' code does */
        printf("  %-10s %-7s %-10s %-10s %-22s %s\n", d->key, type_name(d->type), def,
               d->reference ? d->reference : "-", range, d->doc);
    }
}

int qh_cmd_methods(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))) {
        fprintf(argc > 2 ? stderr : stdout, "usage: qh methods [NAME]\n"
                "  prints every quantization method (or NAME) with its parameters: type,\n"
                "  default, reference (the value that reproduces the authors' code, set by a\n"
                "  config's \"variant\": \"reference\" or `qh layer --variant reference`;\n"
                "  \"-\": the default already does), range and doc\n");
        return argc > 2 ? 2 : 0;
    }
    if (argc == 2) {
        const qh_method_type *m = qh_method_find(argv[1]);
        if (!m) {
            char names[256];
            qh_method_names(names, sizeof names);
            fprintf(stderr, "qh methods: unknown method '%s' (valid: %s)\n", argv[1], names);
            return 1;
        }
        print_method(m);
        return 0;
    }
    const qh_method_type *const *reg = qh_method_registry();
    for (size_t i = 0; reg[i]; i++) {
        if (i) printf("\n");
        print_method(reg[i]);
    }
    return 0;
}
