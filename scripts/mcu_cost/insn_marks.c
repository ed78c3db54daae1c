/*
 * A QEMU TCG plugin for scripts/mcu_cost.sh: counts the guest instructions executed and, each
 * time the guest enters the function at address `mark=ADDR`, prints "mark COUNT" (the count
 * before that function's first instruction). The guest brackets the work it measures with two
 * such calls, so the difference between two marks is the instructions the work executed.
 *
 * Debian's qemu packages ship no TCG plugins (no contrib/plugins/libinsn.so) and no
 * qemu-plugin.h, so this file declares the few calls it uses itself, as QEMU's plugin API
 * version 1 (QEMU 7.x, Debian 12) defines them. Each translated block adds its instruction
 * count when it starts, which is exact for straight-line code and counts a block left early
 * (an exception) in full; the code measured takes no exceptions.
 *
 * Build: gcc -shared -fPIC -O2 -o libinsn_marks.so insn_marks.c
 * Use:   qemu-system-arm ... -plugin ./libinsn_marks.so,mark=0x1234 -d plugin -D marks.log
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

EXPORT int qemu_plugin_version = 1;

/* One vCPU (a Cortex-M machine): a plain counter needs no locking. */
static uint64_t executed;
static uint64_t mark_address = UINT64_MAX;
static uint64_t marks;

/* The block's instruction count, shifted left by one; bit 0 set for the marked function. */
static void on_block(unsigned int vcpu, void *userdata)
{
    uintptr_t info = (uintptr_t)userdata;
    (void)vcpu;
    if (info & 1) {
        char line[64];
        snprintf(line, sizeof line, "mark %" PRIu64 "\n", executed);
        qemu_plugin_outs(line);
        marks++;
    }
    executed += info >> 1;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uintptr_t info = (uintptr_t)qemu_plugin_tb_n_insns(tb) << 1;
    if (qemu_plugin_tb_vaddr(tb) == mark_address) {
        info |= 1;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void *)info);
}

static void on_quit(qemu_plugin_id_t id, void *userdata)
{
    char line[96];
    (void)id;
    (void)userdata;
    snprintf(line, sizeof line, "total %" PRIu64 " marks %" PRIu64 "\n", executed, marks);
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "mark=", 5) == 0) {
            /* A Thumb function's symbol has bit 0 set; the block's address does not. */
            mark_address = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1;
        }
    }
    if (mark_address == UINT64_MAX) {
        fprintf(stderr, "insn_marks: give the marked function's address as mark=ADDR\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_quit, NULL);
    return 0;
}
