//! Master URLs and settings, parsed into validated values ("parse, then resolve").

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Where tasks run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Master {
    /// Threads of the driver process.
    Local {
        /// Worker threads.
        threads: usize,
        /// Attempts per task before the job fails (1 = no retry, as in Spark's local mode).
        max_failures: u32,
    },
    /// Executor processes of the same binary on this machine.
    LocalCluster {
        /// Number of executor processes.
        executors: usize,
        /// Cores per executor.
        cores: usize,
        /// Memory per executor, MiB.
        memory_mb: usize,
    },
    /// An Apache Mesos master.
    Mesos {
        /// `host:port` of the master.
        address: String,
    },
}

const FORMS: &str = "expected local, local[N], local[*], local[N,MAX_FAILURES], \
                     local-cluster[N], local-cluster[N,CORES,MEM_MB], mesos://HOST:PORT or \
                     mesos://zk://HOST:PORT[,HOST:PORT]/PATH";

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn bracket<'a>(s: &'a str, prefix: &str) -> Option<Vec<&'a str>> {
    let inner = s
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    Some(inner.split(',').map(str::trim).collect())
}

impl FromStr for Master {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config(format!("invalid master URL {s:?}: {FORMS}"));
        let positive = |v: &str| -> Result<usize> {
            match v {
                "*" => Ok(cores()),
                _ => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(bad),
            }
        };
        let s = s.trim();
        if s == "local" {
            return Ok(Master::Local {
                threads: 1,
                max_failures: 1,
            });
        }
        if let Some(args) = bracket(s, "local-cluster") {
            return match args.as_slice() {
                [n] => Ok(Master::LocalCluster {
                    executors: positive(n)?,
                    cores: 1,
                    memory_mb: 1024,
                }),
                [n, c, m] => Ok(Master::LocalCluster {
                    executors: positive(n)?,
                    cores: positive(c)?,
                    memory_mb: positive(m)?,
                }),
                _ => Err(bad()),
            };
        }
        if let Some(args) = bracket(s, "local") {
            return match args.as_slice() {
                [n] => Ok(Master::Local {
                    threads: positive(n)?,
                    max_failures: 1,
                }),
                [n, f] => Ok(Master::Local {
                    threads: positive(n)?,
                    max_failures: positive(f)? as u32,
                }),
                _ => Err(bad()),
            };
        }
        if let Some(addr) = s.strip_prefix("mesos://") {
            // Masters found through ZooKeeper: zk://HOST:PORT[,HOST:PORT]/PATH (checked in
            // full when the framework starts).
            if let Some(zk) = addr.strip_prefix("zk://") {
                let (servers, path) = zk.split_once('/').ok_or_else(bad)?;
                if servers.is_empty() || path.is_empty() {
                    return Err(bad());
                }
                return Ok(Master::Mesos {
                    address: addr.to_string(),
                });
            }
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad());
            }
            return Ok(Master::Mesos {
                address: addr.to_string(),
            });
        }
        Err(bad())
    }
}

impl fmt::Display for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Master::Local {
                threads,
                max_failures: 1,
            } => write!(f, "local[{threads}]"),
            Master::Local {
                threads,
                max_failures,
            } => write!(f, "local[{threads},{max_failures}]"),
            Master::LocalCluster {
                executors,
                cores,
                memory_mb,
            } => write!(f, "local-cluster[{executors},{cores},{memory_mb}]"),
            Master::Mesos { address } => write!(f, "mesos://{address}"),
        }
    }
}

impl Default for Master {
    /// `local[*]`: all cores of this machine.
    fn default() -> Self {
        Master::Local {
            threads: cores(),
            max_failures: 1,
        }
    }
}

/// Settings of a context.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where tasks run.
    pub master: Master,
    /// Shown in logs (and later in UIs).
    pub app_name: String,
    /// Attempts per task before its job fails; `None` uses the master's default.
    pub max_failures: Option<u32>,
}

impl Config {
    /// Attempts per task in effect.
    pub fn task_max_failures(&self) -> u32 {
        match (&self.master, self.max_failures) {
            (_, Some(n)) => n.max(1),
            (Master::Local { max_failures, .. }, None) => *max_failures,
            _ => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "local".parse::<Master>().ok(),
            Some(Master::Local {
                threads: 1,
                max_failures: 1
            })
        );
        assert_eq!(
            "local[3]".parse::<Master>().ok(),
            Some(Master::Local {
                threads: 3,
                max_failures: 1
            })
        );
        assert_eq!(
            "local[2,4]".parse::<Master>().ok(),
            Some(Master::Local {
                threads: 2,
                max_failures: 4
            })
        );
        assert!(matches!(
            "local[*]".parse::<Master>(),
            Ok(Master::Local { .. })
        ));
        assert_eq!(
            "local-cluster[2]".parse::<Master>().ok(),
            Some(Master::LocalCluster {
                executors: 2,
                cores: 1,
                memory_mb: 1024
            })
        );
        assert_eq!(
            "local-cluster[2,2,512]".parse::<Master>().ok(),
            Some(Master::LocalCluster {
                executors: 2,
                cores: 2,
                memory_mb: 512
            })
        );
        assert_eq!(
            "mesos://10.0.0.1:5050".parse::<Master>().ok(),
            Some(Master::Mesos {
                address: "10.0.0.1:5050".into()
            })
        );
        assert_eq!(
            "mesos://zk://10.0.0.1:2181,10.0.0.2:2181/mesos"
                .parse::<Master>()
                .ok(),
            Some(Master::Mesos {
                address: "zk://10.0.0.1:2181,10.0.0.2:2181/mesos".into()
            })
        );
    }

    #[test]
    fn rejects_bad_urls_with_the_forms() {
        for bad in [
            "",
            "local[0]",
            "local[x]",
            "local[1,2,3]",
            "yarn",
            "mesos://host",
            "mesos://zk://host:2181",
            "mesos://zk:///mesos",
            "local-cluster[]",
        ] {
            let e = bad.parse::<Master>().expect_err(bad).to_string();
            assert!(e.contains("expected local"), "{bad}: {e}");
        }
    }
}
