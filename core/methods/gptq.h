/* gptq.h -- OPTQ / GPTQ (Frantar et al., arXiv 2210.17323), methods reference §2. */
#ifndef QH_METHOD_GPTQ_H
#define QH_METHOD_GPTQ_H
#include "qh_method.h"
extern const qh_method_type qh_method_gptq;
#endif
