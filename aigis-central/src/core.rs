//! The embedded CPython core: one interpreter, one `aigis` module in
//! `sys.modules`, filled by the shared SKILLS loader (`python/loader.py`).
//!
//! Invariants:
//! - Python runs only on its own thread ("aigis-python"), never on a tokio
//!   worker: async code sends it jobs and awaits the answers, so a slow skill
//!   or import cannot stall log relaying or the agent links.
//! - Between jobs the thread holds no GIL, so threads a plugin starts can run.
//! - Records from a plugin's logger go to the central log through
//!   [`LogSink::blocking_send`], tagged with the plugin's name.

use crate::callpool::CallPool;
use crate::logs::{Level, LogSink, Record};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyTuple};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

const LOADER: &str = include_str!("../../python/loader.py");
const CENTRAL: &str = include_str!("../../python/central.py");
const PROXY: &str = include_str!("../../python/proxy.py");

/// What Python code asks the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Reload(String),
}

type Job = Box<dyn FnOnce(Python<'_>, &Bound<'_, PyAny>) + Send>;

/// A handle to the Python thread; cheap to clone.
#[derive(Clone)]
pub struct PythonCore {
    jobs: std::sync::mpsc::Sender<Job>,
    /// Answers AigisProxy call frames with `proxy.serve` bound to the
    /// loader's `Core` (whose `resolve` is the proxy's reach rule).
    pub calls: CallPool,
}

impl PythonCore {
    /// Starts the interpreter thread and builds the `aigis` module.
    pub fn start(log: LogSink, control: mpsc::Sender<Control>) -> anyhow::Result<PythonCore> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Py<PyAny>, String>>();
        std::thread::Builder::new()
            .name("aigis-python".into())
            .spawn(move || {
                Python::initialize();
                let core = Python::attach(|py| {
                    setup(py, log, control)
                        .map(|(core, serve)| (core.unbind(), serve.unbind()))
                        .map_err(|e| describe(py, &e))
                });
                let core = match core {
                    Ok((core, serve)) => {
                        let _ = ready_tx.send(Ok(serve));
                        core
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    Python::attach(|py| job(py, core.bind(py)));
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(serve)) => Ok(PythonCore {
                jobs,
                calls: CallPool::new(serve_with(serve)),
            }),
            Ok(Err(e)) => anyhow::bail!("the embedded Python core failed to start: {e}"),
            Err(_) => anyhow::bail!("the embedded Python core failed to start"),
        }
    }

    /// Runs `f` on the Python thread with the loader's `Core` object.
    pub async fn run<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(Python<'_>, &Bound<'_, PyAny>) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |py, core| {
                let _ = tx.send(f(py, core));
            }))
            .map_err(|_| "the Python core has stopped".to_string())?;
        rx.await
            .map_err(|_| "the Python core has stopped".to_string())
    }

    /// Loads a plugin's `AIGIS.core` and exposes its SKILLS; returns their names.
    pub async fn load(
        &self,
        plugin: &str,
        entrypoint: &Path,
        core_file: &Path,
    ) -> Result<Vec<String>, String> {
        let args = (
            plugin.to_string(),
            entrypoint.to_string_lossy().into_owned(),
            core_file.to_string_lossy().into_owned(),
        );
        self.run(move |py, core| {
            core.call_method1("load", args)
                .and_then(|names| names.extract::<Vec<String>>())
                .map_err(|e| describe(py, &e))
        })
        .await?
    }

    /// Runs the plugin's `cleanup()` and removes its skills.
    pub async fn unload(&self, plugin: &str) -> Result<(), String> {
        let plugin = plugin.to_string();
        self.run(move |py, core| {
            core.call_method1("unload", (plugin,))
                .map(|_| ())
                .map_err(|e| describe(py, &e))
        })
        .await?
    }

    /// Answers one AigisProxy call frame (see `python/proxy.py`) of the
    /// caller `key` (its fair share is counted under that name).
    pub async fn serve_call(&self, key: &str, payload: Vec<u8>) -> Vec<u8> {
        let id = aigis_agent::calls::call_id(&payload);
        match self.calls.call(key, payload).await {
            Some(reply) => reply,
            None => aigis_agent::calls::error_reply(&id, "RuntimeError", "the AIGIS core stopped"),
        }
    }

    /// Runs every plugin's `cleanup()`, last loaded first.
    pub async fn shutdown(&self) -> Result<(), String> {
        self.run(|py, core| {
            core.call_method0("shutdown")
                .map(|_| ())
                .map_err(|e| describe(py, &e))
        })
        .await?
    }
}

/// `proxy.serve` as the call pool runs it. A failure inside central itself
/// still answers the call, so its caller never waits forever.
fn serve_with(serve: Py<PyAny>) -> crate::callpool::Serve {
    Box::new(move |py, frame| {
        let answered = serve
            .bind(py)
            .call1((PyBytes::new(py, frame),))
            .and_then(|r| Ok(r.cast_into::<PyBytes>()?.as_bytes().to_vec()));
        answered.unwrap_or_else(|e| {
            let id = aigis_agent::calls::call_id(frame);
            aigis_agent::calls::error_reply(&id, "RuntimeError", &describe(py, &e))
        })
    })
}

/// The loader's `Core`, and `proxy.serve` bound to its namespace.
type Started<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

fn setup<'py>(
    py: Python<'py>,
    log: LogSink,
    control: mpsc::Sender<Control>,
) -> PyResult<Started<'py>> {
    let sys = py.import("sys")?;
    sys.setattr("argv", vec!["aigis"])?;
    module(py, LOADER, c"<aigis>/loader.py", c"aigis_loader")?;
    let proxy = module(py, PROXY, c"<aigis>/proxy.py", c"aigis_proxy")?;
    proxy.setattr("plain_cost", plain_cost(&proxy)?)?;
    let central = module(py, CENTRAL, c"<aigis>/central.py", c"aigis_central")?;

    let emit = PyCFunction::new_closure(
        py,
        Some(c"emit"),
        None,
        move |args: &Bound<'_, PyTuple>, _kw| -> PyResult<()> {
            let (plugin, level, text): (String, i32, String) = args.extract()?;
            let level = match level {
                l if l >= 40 => Level::Error,
                l if l >= 30 => Level::Warn,
                _ => Level::Info,
            };
            log.blocking_send(Record {
                plugin,
                level,
                source: "python",
                lines: crate::logs::split_lines(&text),
                budget: None,
            });
            Ok(())
        },
    )?;
    let control = PyCFunction::new_closure(
        py,
        Some(c"control"),
        None,
        move |args: &Bound<'_, PyTuple>, _kw| -> PyResult<bool> {
            let (op, plugin): (String, String) = args.extract()?;
            match op.as_str() {
                "reload" => Ok(control.try_send(Control::Reload(plugin)).is_ok()),
                _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown control operation {op:?}"
                ))),
            }
        },
    )?;
    let core = central.getattr("start")?.call1((emit, control))?;
    let serve = py
        .import("functools")?
        .getattr("partial")?
        .call1((proxy.getattr("serve")?, &core))?;
    Ok((core, serve))
}

/// `proxy.plain_cost`: the Python scan's fast path (see `scan.rs`), with
/// the limits `proxy.py` defines.
fn plain_cost<'py>(proxy: &Bound<'py, PyModule>) -> PyResult<Bound<'py, PyCFunction>> {
    let py = proxy.py();
    let protocol: u8 = py
        .import("pickle")?
        .getattr("HIGHEST_PROTOCOL")?
        .extract()?;
    let limits = crate::scan::Limits {
        opcodes: proxy.getattr("MAX_OPCODES")?.extract()?,
        marks: proxy.getattr("MAX_MARKS")?.extract()?,
        memo: proxy.getattr("MAX_MEMO")?.extract()?,
        long_bytes: proxy.getattr("MAX_LONG_BYTES")?.extract()?,
        protocol: protocol.min(5),
    };
    PyCFunction::new_closure(
        py,
        Some(c"plain_cost"),
        None,
        move |args: &Bound<'_, PyTuple>, _kw| -> PyResult<Option<u64>> {
            let data = args.get_item(0)?;
            let Ok(data) = data.cast::<PyBytes>() else {
                return Ok(None); // the Python scan reads other buffers
            };
            let limit: i64 = args.get_item(1)?.extract()?;
            let Ok(limit) = u64::try_from(limit) else {
                return Ok(None);
            };
            Ok(crate::scan::plain_cost(data.as_bytes(), limit, &limits))
        },
    )
}

fn module<'py>(
    py: Python<'py>,
    source: &str,
    file: &std::ffi::CStr,
    name: &std::ffi::CStr,
) -> PyResult<Bound<'py, PyModule>> {
    let code =
        CString::new(source).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    PyModule::from_code(py, &code, file, name)
}

/// An exception as an operator should see it: a `SkillError`'s own message
/// (which carries the plugin's traceback when there is one), otherwise the
/// full Python traceback.
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let is_skill_error = py
        .import("aigis_loader")
        .and_then(|m| m.getattr("SkillError"))
        .map(|t| err.get_type(py).is(&t))
        .unwrap_or(false);
    if is_skill_error {
        return err.value(py).to_string().trim_end().to_string();
    }
    let formatted = py.import("traceback").and_then(|tb| {
        tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )
        .and_then(|lines| lines.extract::<Vec<String>>())
    });
    match formatted {
        Ok(lines) => lines.concat().trim_end().to_string(),
        Err(_) => err.to_string(),
    }
}

/// `{root}/AIGIS/AIGIS.core`, if the plugin ships one.
pub fn core_file(root: &Path) -> Option<PathBuf> {
    let path = root.join("AIGIS").join("AIGIS.core");
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    /// `MAX_PAYLOAD = a * b * ... - c * d ...` in `python/proxy.py`.
    fn python_constant(source: &str, name: &str) -> usize {
        let line = source
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} is not in proxy.py"));
        let mut terms = line.split(" - ").map(|term| {
            term.split(" * ")
                .map(|f| f.trim().parse::<usize>().expect("a plain number"))
                .product::<usize>()
        });
        let first = terms.next().unwrap();
        terms.fold(first, |acc, t| acc - t)
    }

    #[test]
    fn the_shim_and_the_agent_agree_on_the_control_limit() {
        assert_eq!(
            python_constant(super::PROXY, "MAX_PAYLOAD"),
            proto::MAX_CONTROL
        );
    }
}

/// The Python `major.minor` this binary was built (and linked) for.
pub const PYTHON_BUILT: &str = env!("AIGIS_PYTHON_BUILT");

/// Refuses a libpython of another version than the one `aigis` was built
/// for (the ABI differs: running it could crash anywhere). Asks the loaded
/// library itself, with `Py_GetVersion`, which is safe before the
/// interpreter starts: nothing of the wrong Python has run yet.
pub fn check_libpython() -> Result<(), String> {
    // SAFETY: `Py_GetVersion` may be called before `Py_Initialize`; it
    // returns a pointer to a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(pyo3::ffi::Py_GetVersion()) }
        .to_string_lossy()
        .into_owned();
    let loaded = major_minor(&version);
    if loaded == PYTHON_BUILT {
        return Ok(());
    }
    Err(format!(
        "aigis was built for Python {PYTHON_BUILT} but loaded libpython {loaded} from {}; \
         rebuild with PYO3_PYTHON=python{loaded} (cargo build --release, or cargo install \
         --path aigis-central), or install Python {PYTHON_BUILT}'s shared library \
         (aigis was built with {})",
        library_of("Py_GetVersion").unwrap_or_else(|| "an unknown file".into()),
        env!("AIGIS_PYTHON_BUILT_WITH"),
    ))
}

/// `3.11` of `3.11.7 (main, Dec  8 2023, ...) [GCC 12.2.0]`.
fn major_minor(version: &str) -> String {
    let number = version.split_whitespace().next().unwrap_or_default();
    let mut parts = number.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => number.to_string(),
    }
}

/// The file of the shared library that `symbol` resolves to in this process.
fn library_of(symbol: &str) -> Option<String> {
    let name = CString::new(symbol).ok()?;
    // SAFETY: dlsym and dladdr read the process's symbol tables; `info` is
    // plain data they fill, and `dli_fname` points into the loader's own
    // storage, valid while the library stays loaded (it is never unloaded).
    unsafe {
        let addr = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        if addr.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn the_python_this_test_runs_is_the_one_built_for() {
        assert_eq!(check_libpython(), Ok(()));
        assert!(library_of("Py_GetVersion").is_some_and(|f| f.contains("libpython")));
    }

    #[test]
    fn major_minor_of_version_strings() {
        assert_eq!(
            major_minor("3.11.7 (main, Dec  8 2023) [GCC 12.2.0]"),
            "3.11"
        );
        assert_eq!(major_minor("3.13.0rc1+ (heads/3.13:abc)"), "3.13");
        assert_eq!(major_minor("weird"), "weird");
    }
}
