/* rtn.h -- round-to-nearest / stochastic rounding onto a scalar grid (the
 * U = 0 member of the LDLQ family, methods reference §3 and §15). */
#ifndef QH_METHOD_RTN_H
#define QH_METHOD_RTN_H
#include "qh_method.h"
extern const qh_method_type qh_method_rtn;
#endif
