//! The updater as a long-running service: the configuration loaded once,
//! the touchpoints (bootloader environment, clock) injected, and one
//! [`Updater`] made from them for each operation.
//!
//! `seesaw daemon`, its D-Bus interface and its fleet link share one
//! [`Service`]. Nothing here reads the configuration file again except
//! [`Service::reload`], so a change to `seesaw.toml` takes effect on an
//! explicit reload (`systemctl reload seesaw`, SIGHUP), never half-way
//! through an operation. Tests build a service on a [`SharedMemoryEnv`] and
//! a fixed clock. Must not depend on any front end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use time::OffsetDateTime;

use crate::config::Config;
use crate::uboot_env::{BootEnv, EnvError, MemoryEnv, UbootEnv};
use crate::updater::{UpdateError, Updater};

/// Where the time comes from.
pub trait Clock: Send + Sync {
    /// The time now, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always says the same time (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// Opens the bootloader environment for one operation. An operation opens
/// it afresh, so it sees what U-Boot or another tool wrote since.
pub trait EnvSource: Send + Sync {
    /// The environment of the device `config` describes.
    ///
    /// Errors: [`UpdateError::Env`] (unreadable `fw_env.config`).
    fn open(&self, config: &Config) -> Result<Box<dyn BootEnv>, UpdateError>;
}

/// The real U-Boot environment named by `fw_env_config`, with the
/// configured lock timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct UbootEnvSource;

impl EnvSource for UbootEnvSource {
    fn open(&self, config: &Config) -> Result<Box<dyn BootEnv>, UpdateError> {
        let env = UbootEnv::open(&config.fw_env_config)?.with_lock_timeout(config.lock_wait());
        Ok(Box::new(env))
    }
}

/// An in-memory environment shared by every operation of a service (and by
/// the test that made it, which can read and change it between operations).
#[derive(Debug, Clone, Default)]
pub struct SharedMemoryEnv(pub Arc<Mutex<MemoryEnv>>);

impl SharedMemoryEnv {
    /// A shared environment holding `env`.
    pub fn new(env: MemoryEnv) -> SharedMemoryEnv {
        SharedMemoryEnv(Arc::new(Mutex::new(env)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryEnv) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl BootEnv for SharedMemoryEnv {
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        self.with(|e| e.read_vars())
    }

    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.with(|e| e.write_vars(updates))
    }

    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.with(|e| e.check_write(updates))
    }
}

impl EnvSource for SharedMemoryEnv {
    fn open(&self, _: &Config) -> Result<Box<dyn BootEnv>, UpdateError> {
        Ok(Box::new(self.clone()))
    }
}

/// The loaded configuration and the touchpoints; cheap to clone (one
/// shared service).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    env: Arc<dyn EnvSource>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config_path", &self.inner.config_path)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service on an already loaded `config` (read from `config_path`,
    /// against which relative key paths resolve).
    pub fn new(
        config_path: &Path,
        config: Config,
        env: Arc<dyn EnvSource>,
        clock: Arc<dyn Clock>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                config_path: config_path.to_path_buf(),
                config: RwLock::new(Arc::new(config)),
                env,
                clock,
            }),
        }
    }

    /// Loads the configuration at `config_path` and serves the real U-Boot
    /// environment and the system clock.
    ///
    /// Errors: [`UpdateError::Config`].
    pub fn load(config_path: &Path) -> Result<Service, UpdateError> {
        let config = Config::load(config_path)?;
        Ok(Service::new(
            config_path,
            config,
            Arc::new(UbootEnvSource),
            Arc::new(SystemClock),
        ))
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.inner.config_path
    }

    /// The time now, from the service's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// An updater for one operation, on the configuration in force and a
    /// freshly opened environment. Failed installs are recorded as the last
    /// result (what the daemon reports).
    ///
    /// Errors: [`UpdateError::Env`] (the environment cannot be opened).
    pub fn updater(&self) -> Result<Updater, UpdateError> {
        let config = self.config();
        let env = self.inner.env.open(&config)?;
        let mut u = Updater::with_env((*config).clone(), &self.inner.config_path, env);
        u.record_failures(true);
        Ok(u)
    }

    /// Runs `op` on a fresh updater on a blocking thread (operations do
    /// file and device I/O); a panic becomes [`UpdateError::Panicked`].
    pub async fn run<T, F>(&self, operation: &str, op: F) -> Result<T, UpdateError>
    where
        T: Send + 'static,
        F: FnOnce(Updater, OffsetDateTime) -> Result<T, UpdateError> + Send + 'static,
    {
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = service.now();
            op(service.updater()?, now)
        })
        .await
        .unwrap_or_else(|e| Err(UpdateError::panicked(operation, e)))
    }

    /// Reads the configuration file again and puts it in force for the
    /// operations that start from now on. A configuration that does not
    /// load leaves the one in force unchanged.
    ///
    /// Errors: [`UpdateError::Config`].
    pub fn reload(&self) -> Result<(), UpdateError> {
        let config = Config::load(&self.inner.config_path)?;
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }
}
