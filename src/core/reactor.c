/* epoll reactor, eventfd mailbox and the monotonic clock; see reactor.h. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/reactor.h"

#define REACTOR_BATCH 256

moat_err moat_reactor_init(struct moat_reactor *r)
{
	r->stop = false;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	return r->epfd < 0 ? MOAT_E_IO : MOAT_OK;
}

void moat_reactor_close(struct moat_reactor *r)
{
	if (r->epfd >= 0)
		close(r->epfd);
	r->epfd = -1;
}

moat_err moat_reactor_add(struct moat_reactor *r, struct moat_ev *ev, uint32_t events)
{
	struct epoll_event e = {.events = events, .data.ptr = ev};

	ev->events = events;
	return epoll_ctl(r->epfd, EPOLL_CTL_ADD, ev->fd, &e) == 0 ? MOAT_OK : MOAT_E_IO;
}

moat_err moat_reactor_mod(struct moat_reactor *r, struct moat_ev *ev, uint32_t events)
{
	struct epoll_event e = {.events = events, .data.ptr = ev};

	if (ev->events == events)
		return MOAT_OK;
	ev->events = events;
	return epoll_ctl(r->epfd, EPOLL_CTL_MOD, ev->fd, &e) == 0 ? MOAT_OK : MOAT_E_IO;
}

void moat_reactor_del(struct moat_reactor *r, struct moat_ev *ev)
{
	(void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
	ev->events = 0;
}

int moat_reactor_poll(struct moat_reactor *r, int timeout_ms, void (*before)(void *), void *arg)
{
	struct epoll_event evs[REACTOR_BATCH];
	int n, i;

	n = epoll_wait(r->epfd, evs, REACTOR_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	if (before != NULL)
		before(arg);
	for (i = 0; i < n; i++) {
		struct moat_ev *ev = evs[i].data.ptr;
		ev->cb(ev, evs[i].events);
	}
	return n;
}

moat_err moat_mailbox_init(struct moat_mailbox *mb)
{
	mb->head = mb->tail = NULL;
	atomic_init(&mb->signalled, false);
	mb->ev.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->ev.fd < 0)
		return MOAT_E_IO;
	if (pthread_mutex_init(&mb->lock, NULL) != 0) {
		close(mb->ev.fd);
		return MOAT_E_IO;
	}
	return MOAT_OK;
}

void moat_mailbox_close(struct moat_mailbox *mb)
{
	if (mb->ev.fd >= 0)
		close(mb->ev.fd);
	mb->ev.fd = -1;
	pthread_mutex_destroy(&mb->lock);
}

void moat_mailbox_post(struct moat_mailbox *mb, struct moat_mail *first, struct moat_mail *last)
{
	bool wake;
	uint64_t one = 1;

	pthread_mutex_lock(&mb->lock);
	if (mb->tail != NULL)
		mb->tail->next = first;
	else
		mb->head = first;
	mb->tail = last;
	wake = !atomic_load_explicit(&mb->signalled, memory_order_relaxed);
	atomic_store_explicit(&mb->signalled, true, memory_order_relaxed);
	pthread_mutex_unlock(&mb->lock);
	if (wake)
		(void)!write(mb->ev.fd, &one, sizeof(one));
}

struct moat_mail *moat_mailbox_take(struct moat_mailbox *mb)
{
	struct moat_mail *m;

	if (!atomic_load_explicit(&mb->signalled, memory_order_acquire))
		return NULL;
	pthread_mutex_lock(&mb->lock);
	m = mb->head;
	mb->head = mb->tail = NULL;
	atomic_store_explicit(&mb->signalled, false, memory_order_relaxed);
	pthread_mutex_unlock(&mb->lock);
	return m;
}

int64_t moat_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t moat_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t moat_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
