//! A Lambda function's CPU share: a cgroup (v1 `cpu` controller) whose CFS quota is the share of one
//! vCPU that a function of a given memory size gets (Lambda allocates CPU in proportion to memory,
//! one full vCPU at 1,769 MB). Needs root and the controller at `/sys/fs/cgroup/cpu`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::time::Instant;

const CONTROLLER: &str = "/sys/fs/cgroup/cpu";
const PERIOD_US: u64 = 100_000;
const ONE_VCPU_MB: u64 = 1_769;

pub struct CpuShare {
    pub memory_mb: u64,
    directory: PathBuf,
    procs: File,
}

impl CpuShare {
    pub fn quota_us(memory_mb: u64) -> u64 {
        PERIOD_US * memory_mb / ONE_VCPU_MB
    }

    /// A cgroup of its own for `memory_mb`, or why not.
    pub fn create(memory_mb: u64) -> Result<Self, String> {
        let directory = PathBuf::from(CONTROLLER).join(format!(
            "handover-bench-{memory_mb}mb-{}",
            std::process::id()
        ));
        let failed = |what: &str, e: std::io::Error| {
            format!(
                "{what} {}: {e} (the cold path needs root and the cgroup v1 cpu controller at {CONTROLLER})",
                directory.display()
            )
        };
        std::fs::create_dir_all(&directory).map_err(|e| failed("cannot create", e))?;
        std::fs::write(directory.join("cpu.cfs_period_us"), PERIOD_US.to_string())
            .map_err(|e| failed("cannot set the period of", e))?;
        std::fs::write(
            directory.join("cpu.cfs_quota_us"),
            Self::quota_us(memory_mb).to_string(),
        )
        .map_err(|e| failed("cannot set the quota of", e))?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(directory.join("cgroup.procs"))
            .map_err(|e| failed("cannot open cgroup.procs of", e))?;
        Ok(Self {
            memory_mb,
            directory,
            procs,
        })
    }

    /// Makes `command`'s process join the cgroup between fork and exec, so everything it does,
    /// from loading the executable on, runs at the share. The returned pipe becomes readable when
    /// the process has joined and is about to exec: the moment a cold start begins (moving a process
    /// between cgroups now and then takes the kernel milliseconds, which are not the function's).
    pub fn confine(&self, command: &mut tokio::process::Command) -> std::io::Result<Joined> {
        let procs = self.procs.as_raw_fd();
        let mut ends = [0; 2];
        // SAFETY: `ends` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let signal = write.as_raw_fd();
        // Why by hand: between fork and exec only async-signal-safe calls are allowed (no allocation),
        // so the files are opened before the fork and the child only writes to them: "0" ("this
        // process") to cgroup.procs, then one byte to the pipe.
        unsafe {
            command.pre_exec(move || {
                if libc::write(procs, b"0".as_ptr().cast(), 1) != 1
                    || libc::write(signal, b"j".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Already waiting when the child writes, so that the moment is taken without a thread's start.
        let mut file = std::fs::File::from(read);
        let joined = std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let _ = file.read(&mut byte);
            Instant::now()
        });
        Ok(Joined { joined, write })
    }
}

/// The parent's side of a confined process's "joined" signal.
pub struct Joined {
    joined: std::thread::JoinHandle<Instant>,
    write: OwnedFd,
}

impl Joined {
    /// After the spawn: when the child had joined the cgroup.
    pub async fn at(self) -> Instant {
        drop(self.write);
        tokio::task::spawn_blocking(move || self.joined.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(Instant::now)
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.directory);
    }
}
