/* The serving process's seccomp deny list (sandbox.h). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sandbox.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SB_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SB_SANITIZER 1
#endif
#endif

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/seccomp.h>) && __has_include(<linux/filter.h>) &&                         \
    __has_include(<linux/audit.h>) && (defined(__x86_64__) || defined(__aarch64__))
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#define SB_SECCOMP 1
#endif
#endif

#if defined(SB_SECCOMP) && !defined(SB_SANITIZER)

#if defined(__x86_64__)
#define SB_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
#ifdef SECCOMP_RET_KILL_PROCESS
#define SB_KILL SECCOMP_RET_KILL_PROCESS
#else
#define SB_KILL SECCOMP_RET_KILL
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SB_ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t))
#else
#define SB_ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(uint64_t) + 4)
#endif

#define SB_RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define SB_EPERM (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
/* nr: answer v. */
#define SB_ON(nr, v) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), SB_RET(v)

static const struct sock_filter serve_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SB_AUDIT_ARCH, 1, 0),
    SB_RET(SB_KILL),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
    /* x32 system calls reuse the numbers with this bit set. */
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),
    SB_RET(SB_KILL),
#endif
    /* Running another program or reaching into another process: an
     * attacker's first steps, never the broker's. */
    SB_ON(__NR_execve, SB_KILL),
    SB_ON(__NR_execveat, SB_KILL),
    SB_ON(__NR_ptrace, SB_KILL),
    SB_ON(__NR_process_vm_readv, SB_KILL),
    SB_ON(__NR_process_vm_writev, SB_KILL),
    /* No new processes. clone3 passes its flags in memory a filter cannot
     * read: ENOSYS makes glibc fall back to clone, whose flags it can. */
    SB_ON(__NR_clone3, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
#ifdef __NR_fork
    SB_ON(__NR_fork, SB_EPERM),
#endif
#ifdef __NR_vfork
    SB_ON(__NR_vfork, SB_EPERM),
#endif
    /* clone: threads only (CLONE_THREAD set). */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SB_ARG_LO(0)),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
    SB_RET(SECCOMP_RET_ALLOW),
    SB_RET(SB_EPERM),
    /* Kernel code, namespaces, mounts, keys. */
    SB_ON(__NR_init_module, SB_EPERM),
    SB_ON(__NR_finit_module, SB_EPERM),
    SB_ON(__NR_delete_module, SB_EPERM),
    SB_ON(__NR_kexec_load, SB_EPERM),
    SB_ON(__NR_kexec_file_load, SB_EPERM),
    SB_ON(__NR_bpf, SB_EPERM),
    SB_ON(__NR_perf_event_open, SB_EPERM),
    SB_ON(__NR_userfaultfd, SB_EPERM),
    SB_ON(__NR_mount, SB_EPERM),
    SB_ON(__NR_umount2, SB_EPERM),
    SB_ON(__NR_pivot_root, SB_EPERM),
    SB_ON(__NR_chroot, SB_EPERM),
    SB_ON(__NR_setns, SB_EPERM),
    SB_ON(__NR_unshare, SB_EPERM),
    SB_ON(__NR_keyctl, SB_EPERM),
    SB_ON(__NR_add_key, SB_EPERM),
    SB_ON(__NR_request_key, SB_EPERM),
    SB_RET(SECCOMP_RET_ALLOW),
};

moat_err moat_sandbox_serve(bool *on, char *err, size_t errlen)
{
	struct sock_fprog prog = {
	    .len = (unsigned short)(sizeof(serve_filter) / sizeof(serve_filter[0])),
	    .filter = (struct sock_filter *)serve_filter,
	};

	*on = false;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		if (errno == EINVAL) {
			log_warn("sandbox", "seccomp=unavailable reason=no_new_privs");
			return MOAT_OK;
		}
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return MOAT_E_IO;
	}
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
		if (errno == EINVAL || errno == ENOSYS) {
			log_warn("sandbox", "seccomp=unavailable errno=%d", errno);
			return MOAT_OK;
		}
		snprintf(err, errlen, "cannot install the seccomp filter: %s", strerror(errno));
		return MOAT_E_IO;
	}
	*on = true;
	log_info("sandbox", "seccomp=on policy=deny-exec-ptrace-fork");
	return MOAT_OK;
}

#else

moat_err moat_sandbox_serve(bool *on, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	*on = false;
#ifdef SB_SANITIZER
	log_warn("sandbox", "seccomp=off reason=sanitizer_build");
#else
	log_warn("sandbox", "seccomp=unavailable reason=unsupported_platform");
#endif
	return MOAT_OK;
}

#endif
