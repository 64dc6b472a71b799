//! `--outbound`: the outbound path to MSC on the local runner (its in-process queue, drained by
//! msc-outbound's delivery through the same pace, `MSC_REQUESTS_PER_SECOND` 3, and its sandbox MSC,
//! which notes when each message arrived). First at low load, one message a second: how long from the
//! end user's turn to MSC having it. Then 10 messages a second offered for a minute, over 10
//! conversations: the turns' own time, the queue's depth and each message's delay over time, until
//! the queue is empty; the timeline is drawn in `docs/outbound-load.svg`. The queue and the peers are
//! in process, so the figures are the pace's and the service's, not SQS's or the network's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handover_core::{Clock, SystemClock};
use serde_json::{json, Value};

const CONVERSATIONS: usize = 10;
const OFFERED_PER_SECOND: u64 = 10;
const OFFERED_FOR: Duration = Duration::from_secs(60);
const LOW_LOAD_MESSAGES: usize = 30;

struct Runner {
    base: String,
    http: reqwest::Client,
    sessions: Vec<String>,
}

impl Runner {
    async fn start() -> Runner {
        let store: Arc<dyn handover_core::SessionStore> =
            Arc::new(handover_core::store::memory::MemoryStore::new(
                Arc::new(SystemClock),
                handover_core::LockPolicy::default(),
            ));
        let env = handover_core::config::Env::from_pairs([
            ("MSC_REQUESTS_PER_SECOND", "3"),
            ("AGENT_WAIT_SECS", "0"),
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = handover_local::start_with(listener, env, Some(store.clone()))
            .await
            .expect("the local runner");
        let sessions: Vec<String> = (0..CONVERSATIONS)
            .map(|n| format!("bench-outbound-{n}-{}", uuid::Uuid::new_v4().simple()))
            .collect();
        for session in &sessions {
            handover_tests::handed_over_in(store.as_ref(), session).await;
        }
        Runner {
            base: format!("http://{}", running.addr),
            http: handover_core::clients::new_http_client(None).expect("an HTTP client"),
            sessions,
        }
    }

    /// One end-user turn; how long it took.
    async fn say(&self, session: &str, text: &str) -> Duration {
        let started = Instant::now();
        let reply: Value = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(handover_local::LOCAL_CHANNEL_KEY)
            .json(&json!({"sessionId": session, "text": text}))
            .send()
            .await
            .expect("the turn")
            .json()
            .await
            .expect("its reply");
        assert_eq!(reply["delivery"], "on_its_way", "{reply}");
        started.elapsed()
    }

    /// What the sandbox MSC has: each message's text and when it arrived (epoch milliseconds).
    async fn arrived(&self) -> HashMap<String, i64> {
        let inbox: Value = self
            .http
            .get(format!("{}/sandbox/msc/api/messages", self.base))
            .send()
            .await
            .expect("the inbox")
            .json()
            .await
            .expect("JSON");
        inbox["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let at: jiff::Timestamp = m["ReceivedAt"].as_str()?.parse().ok()?;
                Some((m["Content"].as_str()?.to_owned(), at.as_millisecond()))
            })
            .collect()
    }
}

fn percentile(mut values: Vec<f64>, p: usize) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) * p).div_ceil(100)]
}

pub async fn run() {
    println!("\n## The outbound path to MSC (local runner, MSC_REQUESTS_PER_SECOND 3)\n");
    // The runner's metrics lines are not this report's.
    handover_core::metrics::set_sink(Box::new(|_| {}));
    let runner = Runner::start().await;

    // Low load: one message a second, below the pace.
    let mut sent = HashMap::new();
    let mut turns = Vec::new();
    for n in 0..LOW_LOAD_MESSAGES {
        let text = format!("low {n}");
        sent.insert(text.clone(), SystemClock.now_millis());
        turns.push(runner.say(&runner.sessions[n % CONVERSATIONS], &text).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let arrived = runner.arrived().await;
    let to_msc: Vec<f64> = sent
        .iter()
        .filter_map(|(text, at)| arrived.get(text).map(|got| (got - at) as f64))
        .collect();
    assert_eq!(to_msc.len(), LOW_LOAD_MESSAGES, "every message arrived");
    let turn_ms: Vec<f64> = turns.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!("Low load, {LOW_LOAD_MESSAGES} messages one second apart:\n");
    println!("| | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| the turn (answered once held) | {:.1} | {:.1} |",
        percentile(turn_ms.clone(), 50),
        percentile(turn_ms, 99)
    );
    println!(
        "| end user's turn to MSC having the message | {:.1} | {:.1} |",
        percentile(to_msc.clone(), 50),
        percentile(to_msc, 99)
    );

    // Load: 10 a second for a minute.
    let started = Instant::now();
    let offered = (OFFERED_PER_SECOND * OFFERED_FOR.as_secs()) as usize;
    let sent: Arc<std::sync::Mutex<HashMap<String, i64>>> = Arc::default();
    let turns: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let runner = Arc::new(runner);
    let offer = {
        let (runner, sent, turns) = (runner.clone(), sent.clone(), turns.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1_000 / OFFERED_PER_SECOND));
            let mut turns_in_flight = Vec::new();
            for n in 0..offered {
                tick.tick().await;
                let (runner, sent, turns) = (runner.clone(), sent.clone(), turns.clone());
                turns_in_flight.push(tokio::spawn(async move {
                    let text = format!("load {n}");
                    let session = runner.sessions[n % CONVERSATIONS].clone();
                    sent.lock()
                        .expect("sent")
                        .insert(text.clone(), SystemClock.now_millis());
                    let took = runner.say(&session, &text).await;
                    turns.lock().expect("turns").push(took.as_secs_f64() * 1e3);
                }));
            }
            futures_join(turns_in_flight).await;
        })
    };
    let start_ms = SystemClock.now_millis();
    // Sampled every second: (seconds, offered so far, at MSC so far).
    let mut timeline: Vec<(f64, usize, usize)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let arrived = runner.arrived().await;
        let at_msc = arrived.keys().filter(|t| t.starts_with("load ")).count();
        let so_far = sent.lock().expect("sent").len();
        timeline.push((started.elapsed().as_secs_f64(), so_far, at_msc));
        if at_msc >= offered || started.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    offer.await.expect("the offer");
    let arrived = runner.arrived().await;
    let sent = sent.lock().expect("sent").clone();
    // Each message: when it arrived (seconds from the start) and how long it waited.
    let mut delays: Vec<(f64, f64)> = sent
        .iter()
        .filter_map(|(text, at)| {
            let got = arrived.get(text)?;
            Some(((got - start_ms) as f64 / 1e3, (got - at) as f64 / 1e3))
        })
        .collect();
    delays.sort_by(|a, b| a.0.total_cmp(&b.0));
    let turn_ms = turns.lock().expect("turns").clone();
    let drained = timeline.last().map_or(0.0, |t| t.0);
    let depth_at_end_of_offer = timeline
        .iter()
        .find(|t| t.0 >= OFFERED_FOR.as_secs_f64())
        .map_or(0, |t| t.1 - t.2);
    let rate = delays.len() as f64 / delays.last().map_or(1.0, |d| d.0 - delays[0].0).max(1.0);
    println!(
        "\n{OFFERED_PER_SECOND} messages a second offered for {} s over {CONVERSATIONS} conversations ({offered} messages):\n",
        OFFERED_FOR.as_secs()
    );
    println!("| | figure |");
    println!("|---|---|");
    println!(
        "| turns answered, p50 / p99 ms | {:.1} / {:.1} |",
        percentile(turn_ms.clone(), 50),
        percentile(turn_ms, 99)
    );
    println!("| messages at MSC | {} of {offered} |", delays.len());
    println!("| drained at MSC's pace, messages a second | {rate:.2} |");
    println!(
        "| queue depth when the offer stopped ({} s) | {depth_at_end_of_offer} |",
        OFFERED_FOR.as_secs()
    );
    println!(
        "| longest wait to MSC, s | {:.1} |",
        delays.iter().map(|d| d.1).fold(0.0, f64::max)
    );
    println!("| queue empty after, s | {drained:.0} |");
    println!("\n| s | offered | at MSC | depth |");
    println!("|---|---|---|---|");
    for (t, so_far, at_msc) in timeline.iter().step_by(20) {
        println!("| {t:.0} | {so_far} | {at_msc} | {} |", so_far - at_msc);
    }
    let svg = plot(&timeline, &delays);
    match std::fs::write("docs/outbound-load.svg", svg) {
        Ok(()) => println!("\nThe timeline: docs/outbound-load.svg"),
        Err(err) => println!("\nThe timeline was not written: {err}"),
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        handle.await.expect("a turn");
    }
}

/// The queue's depth (left axis) and each message's wait for MSC (right axis) over time, as an SVG
/// of two polylines: a plotting library would be a dependency for two lines.
fn plot(timeline: &[(f64, usize, usize)], delays: &[(f64, f64)]) -> String {
    let (width, height, margin) = (720.0, 360.0, 50.0);
    let t_max = timeline.last().map_or(1.0, |t| t.0).max(1.0);
    let depth_max = timeline
        .iter()
        .map(|t| (t.1 - t.2) as f64)
        .fold(1.0, f64::max);
    let delay_max = delays.iter().map(|d| d.1).fold(1.0, f64::max);
    let x = |t: f64| margin + t / t_max * (width - 2.0 * margin);
    let y = |v: f64, max: f64| height - margin - v / max * (height - 2.0 * margin);
    let depth: Vec<String> = timeline
        .iter()
        .map(|t| format!("{:.1},{:.1}", x(t.0), y((t.1 - t.2) as f64, depth_max)))
        .collect();
    let delay: Vec<String> = delays
        .iter()
        .map(|d| format!("{:.1},{:.1}", x(d.0), y(d.1, delay_max)))
        .collect();
    let offer_end = x(OFFERED_FOR.as_secs_f64());
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<title>Outbound queue: {OFFERED_PER_SECOND} messages a second offered for {offer} s, drained at MSC's pace</title>
<rect width="100%" height="100%" fill="#fff"/>
<line x1="{margin}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#000"/>
<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{bottom}" stroke="#000"/>
<line x1="{right}" y1="{margin}" x2="{right}" y2="{bottom}" stroke="#000"/>
<line x1="{offer_end:.1}" y1="{margin}" x2="{offer_end:.1}" y2="{bottom}" stroke="#999" stroke-dasharray="4"/>
<text x="{offer_end:.1}" y="{label_y}" text-anchor="middle" fill="#666">offer stops</text>
<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{depth}"/>
<polyline fill="none" stroke="#dc2626" stroke-width="1.5" points="{delay}"/>
<text x="{margin}" y="{label_y}" fill="#2563eb">queue depth (max {depth_max:.0})</text>
<text x="{right}" y="{label_y}" text-anchor="end" fill="#dc2626">wait to MSC, s (max {delay_max:.0})</text>
<text x="{mid}" y="{axis_y}" text-anchor="middle">seconds (0 to {t_max:.0})</text>
</svg>
"##,
        offer = OFFERED_FOR.as_secs(),
        bottom = height - margin,
        right = width - margin,
        label_y = margin - 10.0,
        mid = width / 2.0,
        axis_y = height - margin + 30.0,
        depth = depth.join(" "),
        delay = delay.join(" "),
    )
}
