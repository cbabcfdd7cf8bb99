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
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyString, PyTuple};
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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Answerer, String>>();
        std::thread::Builder::new()
            .name("aigis-python".into())
            .spawn(move || {
                if let Err(e) = start_interpreter() {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let core = Python::attach(|py| {
                    setup(py, log, control)
                        .map(|(core, answerer)| (core.unbind(), answerer))
                        .map_err(|e| describe(py, &e))
                });
                let core = match core {
                    Ok((core, answerer)) => {
                        let _ = ready_tx.send(Ok(answerer));
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
            Ok(Ok(answerer)) => Ok(PythonCore {
                jobs,
                calls: CallPool::new(Box::new(move |py, frame| answerer.serve(py, frame))),
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
    /// Lets the core import what is installed in the core's Python
    /// environment (`env`, made from this very Python): its site-packages
    /// join `sys.path` (once, with their `.pth` files), and the import
    /// system forgets what it did not find there before the install.
    pub async fn see_packages(&self, env: &Path) -> Result<(), String> {
        let site = env
            .join(format!("lib/python{PYTHON_BUILT}/site-packages"))
            .to_string_lossy()
            .into_owned();
        self.run(move |py, _| {
            let code = std::ffi::CString::new(
                "import importlib, site, sys\n\
                 if d not in sys.path:\n    site.addsitedir(d)\n\
                 importlib.invalidate_caches()\n",
            )
            .expect("no NUL");
            let globals = PyDict::new(py);
            globals.set_item("d", site)?;
            py.run(&code, Some(&globals), None)
        })
        .await?
        .map_err(|e| e.to_string())
    }

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

/// Answers AigisProxy call frames: what the call pool and the lane run.
///
/// Most calls carry plain data (`scan.rs`). Such a call is read here: the
/// C unpickler builds it (a pickle with no opcode that names a global or
/// calls anything builds only builtin values, so `RestrictedUnpickler`'s
/// allow-list would be asked nothing) after `scan::plain_cost` charged what
/// it builds against the same budget the Python scan applies; then
/// `proxy.answer` runs it. Anything else, and any call whose shape is not
/// `(str, tuple, dict)`, goes to `proxy.serve`, which reads it with
/// `RestrictedUnpickler` and says why it refuses it. Both paths end in
/// `proxy.answer`, so a call runs and is answered in one place.
struct Answerer {
    /// `proxy.serve` bound to the loader's `Core`.
    serve: Py<PyAny>,
    /// `proxy.answer` bound to the loader's `Core`.
    answer: Py<PyAny>,
    /// `pickle.loads`.
    loads: Py<PyAny>,
    limits: crate::scan::Limits,
    /// `proxy.BUILD_FLOOR` and `proxy.BUILD_FACTOR`: a call's budget.
    build_floor: u64,
    build_factor: u64,
}

impl Answerer {
    /// The reply frame to one call frame. A failure inside central itself
    /// still answers the call, so its caller never waits forever.
    fn serve(&self, py: Python<'_>, frame: &[u8]) -> Vec<u8> {
        let answered = match self.read_plain(py, frame) {
            Some((id, call)) => self.answer.bind(py).call1((id, call.0, call.1, call.2)),
            None => self.serve.bind(py).call1((PyBytes::new(py, frame),)),
        };
        answered
            .and_then(|r| Ok(r.cast_into::<PyBytes>()?.as_bytes().to_vec()))
            .unwrap_or_else(|e| {
                let id = aigis_agent::calls::call_id(frame);
                aigis_agent::calls::error_reply(&id, "RuntimeError", &describe(py, &e))
            })
    }

    /// A plain-data call frame's id and `(path, args, kwargs)`; `None` for
    /// anything `proxy.serve` must read. Nothing runs before this answers.
    #[allow(clippy::type_complexity)]
    fn read_plain<'py>(
        &self,
        py: Python<'py>,
        frame: &[u8],
    ) -> Option<(
        u64,
        (
            Bound<'py, PyString>,
            Bound<'py, PyTuple>,
            Bound<'py, PyDict>,
        ),
    )> {
        let (b'C', Some(id), body) = (*frame.first()?, frame.get(1..9), frame.get(9..)?) else {
            return None;
        };
        let budget = self
            .build_floor
            .saturating_add(self.build_factor.saturating_mul(body.len() as u64));
        crate::scan::plain_cost(body, budget, &self.limits)?;
        let call = self.loads.bind(py).call1((PyBytes::new(py, body),)).ok()?;
        let call = call.cast_into::<PyTuple>().ok()?;
        if call.len() != 3 {
            return None;
        }
        let path = call.get_item(0).ok()?.cast_into::<PyString>().ok()?;
        let args = call.get_item(1).ok()?.cast_into::<PyTuple>().ok()?;
        let kwargs = call.get_item(2).ok()?.cast_into::<PyDict>().ok()?;
        let id = u64::from_be_bytes(id.try_into().ok()?);
        Some((id, (path, args, kwargs)))
    }
}

/// The loader's `Core`, and what answers proxy calls against it.
type Started<'py> = (Bound<'py, PyAny>, Answerer);

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
    let partial = py.import("functools")?.getattr("partial")?;
    let answerer = Answerer {
        serve: partial.call1((proxy.getattr("serve")?, &core))?.unbind(),
        answer: partial.call1((proxy.getattr("answer")?, &core))?.unbind(),
        loads: py.import("pickle")?.getattr("loads")?.unbind(),
        limits: limits(&proxy)?,
        build_floor: proxy.getattr("BUILD_FLOOR")?.extract()?,
        build_factor: proxy.getattr("BUILD_FACTOR")?.extract()?,
    };
    Ok((core, answerer))
}

/// The Python scan's limits, as `proxy.py` defines them.
fn limits(proxy: &Bound<'_, PyModule>) -> PyResult<crate::scan::Limits> {
    let protocol: u8 = proxy
        .py()
        .import("pickle")?
        .getattr("HIGHEST_PROTOCOL")?
        .extract()?;
    Ok(crate::scan::Limits {
        opcodes: proxy.getattr("MAX_OPCODES")?.extract()?,
        marks: proxy.getattr("MAX_MARKS")?.extract()?,
        memo: proxy.getattr("MAX_MEMO")?.extract()?,
        long_bytes: proxy.getattr("MAX_LONG_BYTES")?.extract()?,
        protocol: protocol.min(5),
    })
}

/// `proxy.plain_cost`: the Python scan's fast path (see `scan.rs`), with
/// the limits `proxy.py` defines.
fn plain_cost<'py>(proxy: &Bound<'py, PyModule>) -> PyResult<Bound<'py, PyCFunction>> {
    let py = proxy.py();
    let limits = limits(proxy)?;
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

    /// A core plugin `m` with `ping` (returns its argument), `count`
    /// (counts its calls) and `fail` (counts, then raises).
    async fn core_with_plugin(dir: &std::path::Path) -> (super::PythonCore, crate::logs::LogSink) {
        std::fs::create_dir_all(dir.join("AIGIS")).unwrap();
        std::fs::write(
            dir.join("m_impl.py"),
            "CALLS = []\n\ndef ping(x):\n    return x\n\n\
             def count():\n    CALLS.append(1)\n    return len(CALLS)\n\n\
             def fail():\n    CALLS.append(1)\n    raise KeyError('k')\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("AIGIS/AIGIS.core"),
            "import m_impl as m\nSKILLS = ['m.ping', 'm.count', 'm.fail']\n",
        )
        .unwrap();
        let (log, _task) = crate::logs::LogSink::start(
            dir.join("log"),
            crate::logs::Rotation::default(),
            crate::logs::ConsoleLimits::default(),
        );
        let (control, _) = tokio::sync::mpsc::channel(1);
        let core = super::PythonCore::start(log.clone(), control).unwrap();
        core.load("m", dir, &dir.join("AIGIS/AIGIS.core"))
            .await
            .unwrap();
        (core, log)
    }

    /// A call frame of id 7 for `expr`, a Python expression of the
    /// `(path, args, kwargs)` to pickle.
    async fn frame(core: &super::PythonCore, expr: &str) -> Vec<u8> {
        let code = format!(
            "import pickle, datetime, os\nframe = b'C' + (7).to_bytes(8, 'big') + pickle.dumps({expr}, protocol=4)\n"
        );
        core.run(move |py, _| {
            let code = std::ffi::CString::new(code).unwrap();
            let globals = pyo3::types::PyDict::new(py);
            py.run(&code, Some(&globals), None).unwrap();
            use pyo3::prelude::*;
            globals
                .get_item("frame")
                .unwrap()
                .unwrap()
                .extract::<Vec<u8>>()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// What `proxy.serve` itself answers to `frame`.
    async fn python_serve(core: &super::PythonCore, frame: Vec<u8>) -> Vec<u8> {
        core.run(move |py, loader_core| {
            use pyo3::prelude::*;
            py.import("aigis_proxy")
                .unwrap()
                .getattr("serve")
                .unwrap()
                .call1((loader_core, pyo3::types::PyBytes::new(py, &frame)))
                .unwrap()
                .extract::<Vec<u8>>()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// Sets `aigis_proxy.RestrictedUnpickler` to one that fails (`true`) or
    /// back to the real one.
    async fn break_restricted_unpickler(core: &super::PythonCore, broken: bool) {
        core.run(move |py, _| {
            let code = if broken {
                c"import aigis_proxy as p\np._Real = p.RestrictedUnpickler\n\
                  class Boom:\n    def __init__(self, *a):\n        raise RuntimeError('the slow path ran')\n\
                  p.RestrictedUnpickler = Boom\n"
            } else {
                c"import aigis_proxy as p\np.RestrictedUnpickler = p._Real\n"
            };
            py.run(code, None, None).unwrap();
        })
        .await
        .unwrap();
    }

    fn reply_text(reply: &[u8]) -> String {
        String::from_utf8_lossy(reply).into_owned()
    }

    /// Runs `test` on a runtime of its own that does not wait, when the
    /// test ends, for the log writer the Python core keeps alive.
    fn with_runtime<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test())));
        rt.shutdown_background();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn plain_calls_skip_the_restricted_unpickler_and_answer_as_it_would() {
        with_runtime(plain_calls_body);
    }

    async fn plain_calls_body() {
        let dir = tempfile::tempdir().unwrap();
        let (core, _log) = core_with_plugin(dir.path()).await;
        let ask = |frame: Vec<u8>| core.calls.call("p", frame);

        // Plain data: answered with RestrictedUnpickler out of order, and
        // byte for byte as `proxy.serve` answers it.
        let plain = frame(
            &core,
            "('m.ping', ((b'x' * 64, [1, 2.5, None], {'k': 'v'}),), {})",
        )
        .await;
        break_restricted_unpickler(&core, true).await;
        let fast = ask(plain.clone()).await.unwrap();
        assert_eq!(
            &fast[..10],
            b"R\0\0\0\0\0\0\0\x07\0",
            "{}",
            reply_text(&fast)
        );
        // Anything else goes through it (here: the broken one).
        let dated = frame(&core, "('m.ping', (datetime.date(2026, 12, 4),), {})").await;
        let refused = ask(dated.clone()).await.unwrap();
        assert!(
            reply_text(&refused).contains("the slow path ran"),
            "{}",
            reply_text(&refused)
        );
        break_restricted_unpickler(&core, false).await;
        assert_eq!(fast, python_serve(&core, plain).await);
        let slow = ask(dated.clone()).await.unwrap();
        assert_eq!(
            &slow[..10],
            b"R\0\0\0\0\0\0\0\x07\0",
            "{}",
            reply_text(&slow)
        );
        assert_eq!(slow, python_serve(&core, dated).await);

        // Refusals and errors are the slow path's, word for word.
        for expr in [
            "('m.ping', (os.system,), {})",
            "['m.ping', (), {}]",
            "('m.ping', [], {})",
            "('m._hidden', (), {})",
            "('m.nothing', (), {})",
            "('m.ping', (), {})",
        ] {
            let f = frame(&core, expr).await;
            let reply = ask(f.clone()).await.unwrap();
            assert_eq!(&reply[9..10], b"\x01", "{expr}: {}", reply_text(&reply));
            assert_eq!(reply, python_serve(&core, f).await, "{expr}");
        }

        // A call runs once, also when it raises.
        let count = frame(&core, "('m.count', (), {})").await;
        let fail = frame(&core, "('m.fail', (), {})").await;
        let raised = ask(fail).await.unwrap();
        assert!(
            reply_text(&raised).contains("KeyError"),
            "{}",
            reply_text(&raised)
        );
        let counted = ask(count).await.unwrap();
        let n: i64 = core
            .run(move |py, _| {
                use pyo3::prelude::*;
                py.import("pickle")
                    .unwrap()
                    .call_method1("loads", (pyo3::types::PyBytes::new(py, &counted[10..]),))
                    .unwrap()
                    .extract()
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(n, 2, "m.fail then m.count: two calls in all");
    }

    #[test]
    fn the_shim_and_the_agent_say_the_same_of_a_call_cut_off() {
        let said = super::PROXY
            .split("DROPPED_IN_FLIGHT = (")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .expect("DROPPED_IN_FLIGHT in proxy.py");
        let text: String = said.split('"').skip(1).step_by(2).collect();
        assert_eq!(text, aigis_agent::desk::DROPPED);
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

/// Where the Python `aigis` was built with keeps its standard library
/// (`prefix` or `prefix:exec_prefix`; empty when the build could not ask).
pub const PYTHON_HOME: &str = env!("AIGIS_PYTHON_HOME");

/// The interpreter of the Python `aigis` embeds, from which the core's
/// environment is made: `<exec prefix>/bin/python<major.minor>`.
pub fn embedded_python() -> Option<PathBuf> {
    let exec_prefix = PYTHON_HOME.rsplit(':').next().filter(|p| !p.is_empty())?;
    Some(Path::new(exec_prefix).join(format!("bin/python{PYTHON_BUILT}")))
}

/// Refuses to start the interpreter when the Python `aigis` was built
/// with is gone: its standard library is where its home says.
fn check_python_home(home: &str) -> Result<(), String> {
    let prefix = home.split(':').next().unwrap_or_default();
    if prefix.is_empty() {
        return Ok(());
    }
    let stdlib = Path::new(prefix).join(format!("lib/python{PYTHON_BUILT}"));
    if stdlib.join("os.py").is_file() {
        return Ok(());
    }
    Err(format!(
        "aigis embeds Python {PYTHON_BUILT} from {prefix} (built with {}), but its standard \
         library {} is gone; reinstall that Python, or rebuild aigis with a Python you have: \
         PYO3_PYTHON=/usr/bin/python3 cargo build --release (or cargo install --path aigis-central)",
        env!("AIGIS_PYTHON_BUILT_WITH"),
        stdlib.display()
    ))
}

/// Starts the embedded interpreter once, with the Python `aigis` was built
/// against: its home comes from the build ([`PYTHON_HOME`]), never from
/// the `python3` on `PATH` (a systemd unit's `PATH` has the system's
/// first, whose standard library does not fit this libpython) nor from an
/// environment variable that plugins would inherit. An error says which
/// Python is needed and how to rebuild; later calls return the same.
pub fn start_interpreter() -> Result<(), String> {
    static STARTED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    STARTED
        .get_or_init(|| {
            check_libpython()?;
            check_python_home(PYTHON_HOME)?;
            // SAFETY: the interpreter is not running yet (every start in
            // this process goes through this `OnceLock`, and
            // `Py_IsInitialized` may be asked before one); `config` is
            // initialised by `PyConfig_InitPythonConfig` before any field is
            // touched, cleared once after use, and `home` outlives the call
            // that copies it.
            if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
                unsafe { initialize_with_home() }?;
            }
            Python::initialize(); // pyo3's bookkeeping; the interpreter runs.
            Ok(())
        })
        .clone()
}

/// `Py_InitializeFromConfig` with `home` set (when the build knew it),
/// no signal handlers and no `argv`, then the GIL released as
/// `Python::initialize` leaves it.
unsafe fn initialize_with_home() -> Result<(), String> {
    use pyo3::ffi;
    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    let config = config.as_mut_ptr();
    unsafe {
        ffi::PyConfig_InitPythonConfig(config);
        (*config).install_signal_handlers = 0;
        (*config).parse_argv = 0;
        let home = std::ffi::CString::new(PYTHON_HOME).map_err(|e| e.to_string())?;
        let mut status = ffi::PyStatus_Ok();
        if !PYTHON_HOME.is_empty() {
            status = ffi::PyConfig_SetBytesString(config, &raw mut (*config).home, home.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(config);
        }
        ffi::PyConfig_Clear(config);
        if ffi::PyStatus_Exception(status) != 0 {
            let why = if status.err_msg.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!(
                "the embedded Python {PYTHON_BUILT} (home {PYTHON_HOME}) did not start: {why}"
            ));
        }
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// `aigis check`: starts the embedded interpreter as `run` would and
/// imports what the core needs of the standard library, executing no
/// plugin code. The error is what `run` would fail with.
pub fn probe() -> Result<(), String> {
    start_interpreter()?;
    Python::attach(|py| {
        for module in [
            "struct",
            "pickle",
            "logging",
            "importlib.util",
            "traceback",
            "inspect",
        ] {
            py.import(module).map_err(|e| {
                format!(
                    "the embedded Python {PYTHON_BUILT} (home {PYTHON_HOME}) cannot import \
                     {module}: {}",
                    describe(py, &e)
                )
            })?;
        }
        Ok(())
    })
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
    fn a_python_home_that_is_gone_is_named_with_how_to_rebuild() {
        assert_eq!(check_python_home(PYTHON_HOME), Ok(()));
        assert_eq!(check_python_home(""), Ok(()), "a build that could not ask");
        let err = check_python_home("/nonexistent/pyenv/3.11.7").unwrap_err();
        assert!(err.contains("/nonexistent/pyenv/3.11.7"), "{err}");
        assert!(
            err.contains(&format!("lib/python{PYTHON_BUILT} is gone")),
            "{err}"
        );
        assert!(
            err.contains("PYO3_PYTHON=") && err.contains("cargo build --release"),
            "{err}"
        );
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
