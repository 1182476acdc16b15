/*
 * The test hook of kernels/ops.h: tests break one op's backward on purpose to prove that
 * their gradient check would notice. An unknown name breaks nothing, so a misspelt name
 * shows up as a check that should have failed and did not.
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <string.h>

HnOpId hn_cpu_broken_op = HN_OP_NONE;

void hn_ops_test_break(const char* op) {
    static const struct {
        const char* name;
        HnOpId id;
    } ops[] = {
        {"encoder", HN_OP_ENCODER}, {"layernorm", HN_OP_LAYERNORM},
        {"matmul", HN_OP_MATMUL},   {"attention", HN_OP_ATTENTION},
        {"gelu", HN_OP_GELU},       {"crossentropy", HN_OP_CROSSENTROPY},
        {"rmsnorm", HN_OP_RMSNORM}, {"rope", HN_OP_ROPE},
        {"swiglu", HN_OP_SWIGLU},   {"attention_gqa", HN_OP_ATTENTION_GQA},
        {"attention_prefix", HN_OP_ATTENTION_PREFIX},
    };
    hn_cpu_broken_op = HN_OP_NONE;
    if (!op) return;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(op, ops[i].name) == 0) hn_cpu_broken_op = ops[i].id;
}
