//! Engine benchmarks (divan): the event queue and simulation loop alone, and the full model.
//!
//! `cargo xtask bench` runs these pinned to one core, then times 30-day runs of the binary.

use std::sync::Arc;

use divan::counter::ItemsCount;
use marketsim::engine::{Context, Model, RandomStream, Simulation, Sink, MS_PER_DAY};
use marketsim::market::{Catalog, Epoch, Marketplace};

/// Counts allocations, so divan reports each benchmark's allocated bytes next to its time.
#[global_allocator]
static ALLOCATOR: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// Fifty streams, each rescheduling itself after an exponential gap: the engine's own cost.
struct ExponentialStreams {
    streams: Vec<RandomStream>,
    mean_gap_ms: f64,
}

impl Model for ExponentialStreams {
    type Event = u32;
    type Output = u32;
    fn start(&mut self, context: &mut Context<'_, u32>) {
        for stream in 0..self.streams.len() as u32 {
            context.schedule_at(0, stream);
        }
    }
    fn handle<S: Sink<u32>>(&mut self, stream: u32, context: &mut Context<'_, u32>, sink: &mut S) {
        sink.accept(&stream);
        let gap = self.streams[stream as usize].exponential(self.mean_gap_ms);
        context.schedule_after(gap as u64, stream);
    }
}

struct Count(u64);
impl<O> Sink<O> for Count {
    #[inline]
    fn accept(&mut self, _: &O) {
        self.0 += 1;
    }
}

const ENGINE_EVENTS: u64 = 2_000_000;

#[divan::bench(sample_count = 10)]
fn engine_50_exponential_streams(bencher: divan::Bencher) {
    bencher.counter(ItemsCount::new(ENGINE_EVENTS)).bench(|| {
        let model = ExponentialStreams {
            streams: (0..50)
                .map(|i| RandomStream::for_name(1, &format!("s{i}")))
                .collect(),
            mean_gap_ms: 1_000.0,
        };
        let mut simulation = Simulation::new(model);
        let mut count = Count(0);
        while count.0 < ENGINE_EVENTS {
            simulation.step(&mut count);
        }
        count.0
    });
}

/// The reference the other figures are read against: a bare `BinaryHeap` hold loop over the
/// same fifty streams, with the exponential gaps drawn before timing starts (no random draws,
/// no engine). `cargo xtask bench` divides every throughput by this one, measured in the same
/// invocation, so figures from a busy or slower machine stay comparable.
#[divan::bench(sample_count = 10)]
fn bare_binary_heap_hold_loop(bencher: divan::Bencher) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    const GAPS: usize = 1 << 16;
    let mut draws = RandomStream::for_name(1, "gaps");
    let gaps: Vec<u64> = (0..GAPS)
        .map(|_| draws.exponential(1_000.0) as u64)
        .collect();
    bencher.counter(ItemsCount::new(ENGINE_EVENTS)).bench(|| {
        let mut heap: BinaryHeap<Reverse<(u64, u32)>> = (0..50).map(|s| Reverse((0, s))).collect();
        let mut next_gap = 0;
        let mut handled = 0u64;
        while handled < ENGINE_EVENTS {
            let Some(Reverse((time, stream))) = heap.pop() else {
                break;
            };
            handled += 1;
            heap.push(Reverse((time + gaps[next_gap], stream)));
            next_gap = (next_gap + 1) % GAPS;
        }
        divan::black_box(handled)
    });
}

#[divan::bench(sample_count = 5)]
fn full_model_one_day(bencher: divan::Bencher) {
    let catalog = Arc::new(Catalog::embedded().unwrap_or_else(|e| panic!("{e}")));
    let epoch = Epoch::from_datetime("2025-01-06T00:00:00Z".parse().unwrap_or_default());
    let mut events = Count(0);
    let run_day = |events: &mut Count| {
        let model =
            Marketplace::new(Arc::clone(&catalog), 42, epoch).unwrap_or_else(|e| panic!("{e}"));
        let mut simulation = Simulation::new(model);
        simulation.run_until(MS_PER_DAY, events);
    };
    run_day(&mut events);
    let per_day = events.0;
    bencher.counter(ItemsCount::new(per_day)).bench(|| {
        let mut count = Count(0);
        run_day(&mut count);
        count.0
    });
}
