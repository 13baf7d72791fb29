//! The simulator's state, shared by the ECS endpoint, the action handlers, the admin API and
//! the in-process handle (each of which depends on this module and not on the others).

use std::sync::{Mutex, MutexGuard};

use jiff::Timestamp;

use crate::auth::Verifier;
use crate::calls::CallLog;
use crate::config::SimConfig;
use crate::faults::{Faults, Rng};
use crate::fleet::{Clock, Fleet};

/// State shared by the HTTP handlers and the in-process handle.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) fleet: Mutex<Fleet>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) calls: CallLog,
    pub(crate) verifier: Verifier,
    pub(crate) clock: Clock,
    pub(crate) rng: Rng,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        let fleet = build_fleet(&config, Timestamp::now());
        Self {
            fleet: Mutex::new(fleet),
            faults: Mutex::new(Faults::from_config(&config)),
            calls: CallLog::new(config.log_capacity),
            verifier: Verifier::new(config.effective_keys()),
            clock: Clock::default(),
            rng: Rng::new(config.seed),
            config,
        }
    }

    /// An upper-case UUID-shaped id, as ECS's RequestIds look.
    pub(crate) fn request_id(&self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            0x4000 | (a & 0x0FFF),
            0x8000 | ((b >> 48) & 0x3FFF),
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

pub(crate) fn build_fleet(config: &SimConfig, now: Timestamp) -> Fleet {
    let mut fleet = Fleet::new(config.transitions);
    for spec in &config.instances {
        fleet.insert(spec, now);
    }
    fleet
}
