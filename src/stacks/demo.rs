//! Deliberate regressions, to prove that the regression check
//! (`wsbench compare`) finds them. Built only with the `regression-demo`
//! feature; without it [`per_message`] is an empty inline function and the
//! stacks' echo loops are what they would be without this file.
//!
//! With the feature, per echoed message of the named stack:
//! - `WSBENCH_DEMO_SLOW_STACK=NAME` and `WSBENCH_DEMO_SLOW_NS=N`: spin for
//!   N nanoseconds;
//! - `WSBENCH_DEMO_ALLOC_STACK=NAME`: make one extra 64-byte allocation.

#[cfg(feature = "regression-demo")]
mod enabled {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    pub struct Demo {
        slow_stack: Option<String>,
        slow: Duration,
        alloc_stack: Option<String>,
    }

    pub fn demo() -> &'static Demo {
        static DEMO: OnceLock<Demo> = OnceLock::new();
        DEMO.get_or_init(|| Demo {
            slow_stack: std::env::var("WSBENCH_DEMO_SLOW_STACK").ok(),
            slow: Duration::from_nanos(
                std::env::var("WSBENCH_DEMO_SLOW_NS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            alloc_stack: std::env::var("WSBENCH_DEMO_ALLOC_STACK").ok(),
        })
    }

    pub fn per_message(stack: &str) {
        let d = demo();
        if d.slow_stack.as_deref() == Some(stack) {
            let until = Instant::now() + d.slow;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if d.alloc_stack.as_deref() == Some(stack) {
            std::hint::black_box(Box::new([0u8; 64]));
        }
    }
}

/// Called by every Rust stack once per echoed message.
#[cfg(feature = "regression-demo")]
pub fn per_message(stack: &str) {
    enabled::per_message(stack);
}

/// Called by every Rust stack once per echoed message; does nothing in a
/// normal build.
#[cfg(not(feature = "regression-demo"))]
#[inline(always)]
pub fn per_message(_stack: &str) {}
