/* eg_threads.c — the static worker pool of eg_threads.h (POSIX threads). */
#include "eg_threads.h"

#if EG_NUM_THREADS > 1

#include <pthread.h>
#include <stdlib.h>

static pthread_once_t eg_pool_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t eg_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t eg_pool_go = PTHREAD_COND_INITIALIZER;   /* a new job was posted */
static pthread_cond_t eg_pool_done = PTHREAD_COND_INITIALIZER; /* the last worker finished */
static pthread_t eg_pool_threads[EG_NUM_THREADS - 1];
static unsigned eg_pool_generation;                            /* bumped once per job */
static int eg_pool_pending;                                    /* workers still running it */
static int eg_pool_ntasks;
static void (*eg_pool_fn)(void *, int);
static void *eg_pool_ctx;

static void *eg_worker(void *arg)
{
    const int task = (int)(size_t)arg;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&eg_pool_mu);
        while (eg_pool_generation == seen)
            pthread_cond_wait(&eg_pool_go, &eg_pool_mu);
        seen = eg_pool_generation;
        void (*fn)(void *, int) = eg_pool_fn;
        void *ctx = eg_pool_ctx;
        const int run = task < eg_pool_ntasks;
        pthread_mutex_unlock(&eg_pool_mu);
        if (run)
            fn(ctx, task);
        pthread_mutex_lock(&eg_pool_mu);
        if (--eg_pool_pending == 0)
            pthread_cond_signal(&eg_pool_done);
        pthread_mutex_unlock(&eg_pool_mu);
    }
    return NULL;
}

static void eg_pool_start(void)
{
    for (int i = 0; i < EG_NUM_THREADS - 1; i++)
        if (pthread_create(&eg_pool_threads[i], NULL, eg_worker, (void *)(size_t)(i + 1)) != 0)
            abort(); /* at start-up, before any step ran: no partial result to lose */
}

void eg_parallel_run(int ntasks, void (*fn)(void *ctx, int task), void *ctx)
{
    if (ntasks <= 1) {
        fn(ctx, 0);
        return;
    }
    pthread_once(&eg_pool_once, eg_pool_start);
    pthread_mutex_lock(&eg_pool_mu);
    eg_pool_fn = fn;
    eg_pool_ctx = ctx;
    eg_pool_ntasks = ntasks;
    eg_pool_pending = EG_NUM_THREADS - 1;
    eg_pool_generation++;
    pthread_cond_broadcast(&eg_pool_go);
    pthread_mutex_unlock(&eg_pool_mu);
    fn(ctx, 0);
    pthread_mutex_lock(&eg_pool_mu);
    while (eg_pool_pending > 0)
        pthread_cond_wait(&eg_pool_done, &eg_pool_mu);
    pthread_mutex_unlock(&eg_pool_mu);
}

#else /* one thread: no pool */

void eg_parallel_run(int ntasks, void (*fn)(void *ctx, int task), void *ctx)
{
    for (int t = 0; t < ntasks; t++)
        fn(ctx, t);
}

#endif
