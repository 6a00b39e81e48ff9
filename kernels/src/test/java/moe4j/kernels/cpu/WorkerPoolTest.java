package moe4j.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.LockSupport;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class WorkerPoolTest {

    @ParameterizedTest(name = "{0} threads, {1} items, grain {2}")
    @CsvSource({"1, 100, 1", "2, 0, 1", "2, 1, 1", "3, 7, 1", "4, 1000, 3", "3, 50, 100"})
    void visitsEveryIndexExactlyOnce(int threads, int count, int grain) {
        try (WorkerPool pool = new WorkerPool(threads)) {
            for (int round = 0; round < 20; round++) {
                AtomicIntegerArray visits = new AtomicIntegerArray(Math.max(count, 1));
                pool.parallelFor(count, grain, (from, to, worker) -> {
                    assertTrue(worker >= 0 && worker < threads, "worker index " + worker);
                    for (int i = from; i < to; i++) {
                        visits.incrementAndGet(i);
                    }
                });
                for (int i = 0; i < count; i++) {
                    assertEquals(1, visits.get(i), "index " + i + " in round " + round);
                }
            }
        }
    }

    @ParameterizedTest(name = "{0} threads")
    @CsvSource({"2", "3", "9", "16"})
    @Timeout(value = 60, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
    void everyParkedHelperWakesForTheNextLoop(int threads) throws InterruptedException {
        // helpers left idle park; a loop must reach each of them through the wake-up tree (helper 7 of 9 only via
        // helpers 1 and 3): every index waits until all workers hold one, so a helper left asleep fails the test
        try (WorkerPool pool = new WorkerPool(threads)) {
            for (int round = 0; round < 3; round++) {
                Thread.sleep(200);
                assertEquals(threads, workersInOneLoop(pool, threads).size(), "workers that took part in round " + round);
            }
        }
    }

    @ParameterizedTest(name = "{0} spins")
    @CsvSource({"0", "1", "50"})
    @Timeout(value = 120, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
    void helpersCaughtWhileGoingToSleepStillWakeForTheNextLoop(int spins) {
        // helpers that park (almost) at once, and gaps of 0-50 us between loops, catch them spinning, flagging
        // themselves or parking: a helper that flagged itself after its last look at the loop counter would sleep
        // through a loop and fail it
        int threads = 5;
        SplittableRandom random = new SplittableRandom(7);
        try (WorkerPool pool = new WorkerPool(threads, spins)) {
            for (int round = 0; round < 3000; round++) {
                if (random.nextBoolean()) {
                    LockSupport.parkNanos(random.nextLong(50_000));
                }
                assertEquals(threads, workersInOneLoop(pool, threads).size(), "workers that took part in round " + round);
            }
        }
    }

    /**
     * The workers that ran a loop of one index each ({@code threads} indices), each index waiting until every worker
     * holds one (at most 5 s): a helper that sleeps through the loop leaves its index to another and is missing.
     */
    private static Set<Integer> workersInOneLoop(WorkerPool pool, int threads) {
        CountDownLatch allInside = new CountDownLatch(threads);
        Set<Integer> workers = ConcurrentHashMap.newKeySet();
        pool.parallelFor(threads, 1, (from, to, worker) -> {
            for (int i = from; i < to; i++) {
                workers.add(worker);
                allInside.countDown();
                try {
                    allInside.await(5, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        });
        return workers;
    }

    @Test
    @Timeout(value = 60, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
    void backToBackShortLoopsEachRunEveryIndexOnceAndNoMore() {
        // helpers that are still leaving one loop while the next is set up must not take its indices twice
        // nor end it early (a loop ends when its indices are done, not when every helper has reported)
        try (WorkerPool pool = new WorkerPool(2)) {
            for (int round = 0; round < 50_000; round++) {
                int count = 2 + round % 37;
                AtomicIntegerArray visits = new AtomicIntegerArray(count);
                pool.parallelFor(count, 1, (from, to, worker) -> {
                    for (int i = from; i < to; i++) {
                        visits.incrementAndGet(i);
                    }
                });
                for (int i = 0; i < count; i++) {
                    if (visits.get(i) != 1) {
                        assertEquals(1, visits.get(i), "index " + i + " of " + count + " in round " + round);
                    }
                }
            }
        }
    }

    @Test
    void rethrowsATaskFailureAndStaysUsable() {
        try (WorkerPool pool = new WorkerPool(3)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () ->
                    pool.parallelFor(100, 1, (from, to, worker) -> {
                        if (from <= 57 && 57 < to) {
                            throw new IllegalStateException("boom at 57");
                        }
                    }));
            assertEquals("boom at 57", e.getMessage());
            AtomicIntegerArray visits = new AtomicIntegerArray(10);
            pool.parallelFor(10, 1, (from, to, worker) -> {
                for (int i = from; i < to; i++) {
                    visits.incrementAndGet(i);
                }
            });
            for (int i = 0; i < 10; i++) {
                assertEquals(1, visits.get(i));
            }
        }
    }

    @Test
    void serializesLoopsFromConcurrentCallers() throws Exception {
        try (WorkerPool pool = new WorkerPool(2); ExecutorService callers = Executors.newFixedThreadPool(4)) {
            List<Future<long[]>> results = new ArrayList<>();
            for (int c = 0; c < 4; c++) {
                int seed = c;
                results.add(callers.submit(() -> {
                    long[] out = new long[500];
                    for (int round = 0; round < 50; round++) {
                        pool.parallelFor(out.length, 1, (from, to, worker) -> {
                            for (int i = from; i < to; i++) {
                                out[i] += (long) i * seed;
                            }
                        });
                    }
                    return out;
                }));
            }
            for (int c = 0; c < 4; c++) {
                long[] out = results.get(c).get();
                for (int i = 0; i < out.length; i++) {
                    assertEquals(50L * i * c, out[i]);
                }
            }
        }
    }

    @Test
    void rejectsWorkAfterClose() {
        WorkerPool pool = new WorkerPool(2);
        pool.close();
        assertThrows(IllegalStateException.class, () -> pool.parallelFor(100, 1, (from, to, worker) -> { }));
    }
}
