/*
 * The event loop of one worker thread: an epoll set, a periodic tick
 * (timerfd) and a mailbox other threads post to (eventfd). Every handle is
 * owned by exactly one reactor; nothing here is shared except the mailbox,
 * whose lock guards only its own list (never held during work).
 */
#ifndef MOAT_REACTOR_H
#define MOAT_REACTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

struct moat_ev;
typedef void (*moat_ev_cb)(struct moat_ev *ev, uint32_t events);

/* Embed in the object that owns fd; the callback recovers it with
 * container_of-style arithmetic. */
struct moat_ev {
	int fd;
	uint32_t events; /* current epoll interest */
	moat_ev_cb cb;
};

struct moat_reactor {
	int epfd;
	bool stop;
};

moat_err moat_reactor_init(struct moat_reactor *r);
void moat_reactor_close(struct moat_reactor *r);
moat_err moat_reactor_add(struct moat_reactor *r, struct moat_ev *ev, uint32_t events);
moat_err moat_reactor_mod(struct moat_reactor *r, struct moat_ev *ev, uint32_t events);
void moat_reactor_del(struct moat_reactor *r, struct moat_ev *ev);
/* Wait up to timeout_ms, call before(arg) (if set) once the wait returns,
 * then dispatch ready events; returns the count. */
int moat_reactor_poll(struct moat_reactor *r, int timeout_ms, void (*before)(void *), void *arg);

/* A multi-producer, single-consumer queue of intrusive items. */
struct moat_mail {
	struct moat_mail *next;
};

struct moat_mailbox {
	pthread_mutex_t lock;
	struct moat_mail *head, *tail;
	struct moat_ev ev; /* eventfd, written when mail arrives in an empty box;
			    * the owner watches it edge-triggered */
	atomic_bool signalled;
};

moat_err moat_mailbox_init(struct moat_mailbox *mb);
void moat_mailbox_close(struct moat_mailbox *mb);
/* Append a chain [first..last] (last->next must be NULL); wakes the owner
 * only when the box was empty, so a burst costs one write(2). */
void moat_mailbox_post(struct moat_mailbox *mb, struct moat_mail *first, struct moat_mail *last);
/* Take everything (owner thread); NULL when empty. Cheap when empty: one
 * atomic load, no system call. */
struct moat_mail *moat_mailbox_take(struct moat_mailbox *mb);

/* Monotonic milliseconds, and microseconds. */
uint64_t moat_now_ms(void);
uint64_t moat_now_us(void);
/* Wall-clock milliseconds since the epoch (for what outlives the process). */
int64_t moat_wall_ms(void);

#define moat_container_of(ptr, type, member)                                                       \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
