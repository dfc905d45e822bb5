/* ldlq.h -- LDLQ and LDLQ-RG (QuIP, Chee et al., arXiv 2307.13304), methods reference §3.
 * The blocked column loop and the greedy passes run on row chunks in
 * parallel (qh_rows.h; one thread with stochastic rounding), bit-identical
 * for any thread count. */
#ifndef QH_METHOD_LDLQ_H
#define QH_METHOD_LDLQ_H
#include "qh_method.h"
extern const qh_method_type qh_method_ldlq;
extern const qh_method_type qh_method_ldlq_rg;
#endif
