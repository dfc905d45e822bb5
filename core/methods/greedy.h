/* greedy.h -- greedy coordinate descent from the unrounded W (QuIP's `allbal`,
 * "Greedy" in the paper), methods reference §3.  The grid fit and the passes
 * run on row chunks in parallel (qh_rows.h), bit-identical for any thread
 * count. */
#ifndef QH_METHOD_GREEDY_H
#define QH_METHOD_GREEDY_H
#include "qh_method.h"
extern const qh_method_type qh_method_greedy;
#endif
