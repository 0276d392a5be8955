/* eg_threads.h — a static pool of EG_NUM_THREADS - 1 worker threads (plus the caller).
 *
 * The workers are created once, on the first parallel call (pthread_once); after that a call
 * allocates nothing: it posts the task function under a mutex, wakes the workers, runs task 0
 * itself and waits until every task is done. EG_NUM_THREADS comes from the board description
 * (targets/<target>/target.json "threads", -DEG_NUM_THREADS=N); 1 compiles no threads at all.
 */
#ifndef EG_THREADS_H
#define EG_THREADS_H

#ifndef EG_NUM_THREADS
#define EG_NUM_THREADS 1
#endif

/* Run fn(ctx, t) for t = 0 .. ntasks-1 (ntasks <= EG_NUM_THREADS), task 0 on the calling thread,
 * task t on worker t; returns when all have returned. Calls must not nest. */
void eg_parallel_run(int ntasks, void (*fn)(void *ctx, int task), void *ctx);

#endif /* EG_THREADS_H */
