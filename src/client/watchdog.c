/*
 * watchdog.c — deadlines for calls that block inside a library.
 *
 * libpq's fast-path function call (PQfn) waits for the server without a
 * timeout.  A call arms a watch on its socket before it blocks and disarms
 * it after; one thread per process shuts the socket down when a watch's
 * deadline passes, which ends the wait with an error the caller can tell
 * apart (the watch says it fired).
 *
 * The thread sleeps until the earliest armed deadline.  Arming wakes it
 * only when the new deadline comes before the time it means to wake (after
 * an idle spell, mostly): back-to-back calls with one timeout each find it
 * asleep until a deadline older than theirs, at which it looks again.  The
 * thread starts with the first watch and stops when the last user lets go
 * (pyr_watchdog_release), so a process that closes every bucket leaves no
 * thread behind.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static pthread_mutex_t wd_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond;
static pthread_once_t wd_once = PTHREAD_ONCE_INIT;
/* one running thread; a stopping one may linger until joined */
typedef struct wd_instance
{
	pthread_t	thread;
	bool		stop;
} wd_instance;

static wd_instance *wd_current;	/* the running thread, or NULL */
static int	wd_users;			/* pyr_watchdog_hold - release */
static int64_t wd_wake;			/* monotonic ms the thread sleeps until */
static pyr_watch *wd_armed;		/* doubly linked, in arming order */

static void
wd_init_cond(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wd_cond, &attr);
	pthread_condattr_destroy(&attr);
}

/*
 * After fork the child has no thread and no calls in flight, and the lock
 * and the condition may hold the state of the parent's threads: all start
 * afresh.  Buckets it inherited still count as users.
 */
static void
wd_after_fork_child(void)
{
	pthread_mutex_init(&wd_mutex, NULL);
	wd_init_cond();
	free(wd_current);
	wd_current = NULL;
	wd_armed = NULL;
}

static void
wd_init(void)
{
	wd_init_cond();
	pthread_atfork(NULL, NULL, wd_after_fork_child);
}

static void
unlink_watch(pyr_watch *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		wd_armed = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->armed = false;
}

static void *
wd_main(void *arg)
{
	wd_instance *self = arg;

	pthread_mutex_lock(&wd_mutex);
	while (!self->stop)
	{
		int64_t		now = pyr_monotonic_ms();
		int64_t		wake = now + 3600000;
		pyr_watch  *w = wd_armed;
		struct timespec ts;

		while (w)
		{
			pyr_watch  *next = w->next;

			if (w->deadline <= now)
			{
				/* the blocked call sees end of file and returns */
				shutdown(w->fd, SHUT_RDWR);
				w->fired = true;
				unlink_watch(w);
			}
			else if (w->deadline < wake)
				wake = w->deadline;
			w = next;
		}
		wd_wake = wake;
		ts.tv_sec = wake / 1000;
		ts.tv_nsec = (wake % 1000) * 1000000;
		pthread_cond_timedwait(&wd_cond, &wd_mutex, &ts);
	}
	pthread_mutex_unlock(&wd_mutex);
	return NULL;
}

void
pyr_watchdog_hold(void)
{
	pthread_once(&wd_once, wd_init);
	pthread_mutex_lock(&wd_mutex);
	wd_users++;
	pthread_mutex_unlock(&wd_mutex);
}

void
pyr_watchdog_release(void)
{
	wd_instance *stopping = NULL;

	pthread_mutex_lock(&wd_mutex);
	if (--wd_users == 0 && wd_current)
	{
		stopping = wd_current;
		stopping->stop = true;
		wd_current = NULL;
		pthread_cond_broadcast(&wd_cond);
	}
	pthread_mutex_unlock(&wd_mutex);
	if (stopping)
	{
		pthread_join(stopping->thread, NULL);
		free(stopping);
	}
}

int
pyr_watch_arm(pyr_watch *w, int fd, int64_t deadline, pyrate_error *err)
{
	pthread_mutex_lock(&wd_mutex);
	if (!wd_current)
	{
		wd_instance *t = calloc(1, sizeof(wd_instance));
		int			rc = t ? pthread_create(&t->thread, NULL, wd_main, t) : ENOMEM;

		if (rc != 0)
		{
			pthread_mutex_unlock(&wd_mutex);
			free(t);
			return pyr_fail(err, PYRATE_ENOMEM, "cannot start the timeout thread: %s", strerror(rc));
		}
		wd_current = t;
		wd_wake = 0;			/* it looks at the list as soon as it runs */
	}
	w->fd = fd;
	w->deadline = deadline;
	w->fired = false;
	w->armed = true;
	w->prev = NULL;
	w->next = wd_armed;
	if (wd_armed)
		wd_armed->prev = w;
	wd_armed = w;
	if (deadline < wd_wake)
		pthread_cond_broadcast(&wd_cond);
	pthread_mutex_unlock(&wd_mutex);
	return PYRATE_OK;
}

bool
pyr_watch_disarm(pyr_watch *w)
{
	bool		fired;

	pthread_mutex_lock(&wd_mutex);
	if (w->armed)
		unlink_watch(w);
	fired = w->fired;
	pthread_mutex_unlock(&wd_mutex);
	return fired;
}
