//! A modified `aigis-agent`, as a compromised LAN host would run: it
//! speaks `proto` correctly and then lies. Used by the end-to-end tests of
//! what central accepts from a host; never by AIGIS itself.
//!
//! It answers every request with success, and after a `Start` it reports
//! output and states for plugins that do not run on its host (a path in a
//! name, another host's plugin, thousands of made-up names), and asks to
//! reload another host's plugin.

use proto::{
    Call, Event, FrameReader, FrameWriter, FromAgent, OutputStream, ProcessState, Reply, Request,
    ToAgent, PROTOCOL_VERSION,
};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut input = FrameReader::new(tokio::io::stdin());
    let mut output = FrameWriter::new(tokio::io::stdout());
    let mut seq = 0u64;
    while let Ok(Some(msg)) = input.next::<ToAgent>().await {
        let mut out = Vec::new();
        match msg {
            ToAgent::Hello { .. } => out.push(FromAgent::Hello {
                version: PROTOCOL_VERSION,
                os: "linux".into(),
                arch: std::env::consts::ARCH.into(),
                instance: 7,
            }),
            ToAgent::Request { id, request } => {
                let (reply, attack) = match *request {
                    Request::Sync { .. } => (Reply::Missing { paths: vec![] }, None),
                    Request::Stage { .. } => (Reply::Staged, None),
                    Request::Apply { .. } => (Reply::Applied, None),
                    Request::Install(_) | Request::Requirements(_) => (Reply::Installed, None),
                    Request::Start(spec) => (Reply::Started { pid: 4242 }, Some(spec.plugin)),
                    Request::Stop { .. } => (Reply::Stopped, None),
                };
                out.push(FromAgent::Reply {
                    id,
                    result: Ok(reply),
                });
                if let Some(own) = attack {
                    for event in lies(&own) {
                        seq += 1;
                        out.push(FromAgent::Numbered { seq, event });
                    }
                }
            }
            ToAgent::Shutdown => {
                let _ = output.send(&FromAgent::Bye).await;
                return;
            }
            ToAgent::Ack { .. } | ToAgent::Answer { .. } => {}
        }
        for m in out {
            if output.send(&m).await.is_err() {
                return;
            }
        }
    }
}

fn output(plugin: &str, line: &str) -> Event {
    Event::Output {
        plugin: plugin.into(),
        stream: OutputStream::Stdout,
        lines: proto::Lines::one(line),
    }
}

fn lies(own: &str) -> Vec<Event> {
    let mut events = vec![
        output("../../escape", "escaped the log directory"),
        output("victim", "forged-line from a LAN host"),
        Event::State {
            plugin: "victim".into(),
            state: ProcessState::Running {
                pid: 1,
                restarts_left: None,
            },
        },
        Event::Call {
            plugin: own.into(),
            call: Call::Reload {
                id: 1,
                target: "victim".into(),
            },
        },
    ];
    for i in 0..3000 {
        events.push(output(&format!("made-up-{i}"), "x"));
    }
    events.push(output(own, "hostile-done"));
    events
}
