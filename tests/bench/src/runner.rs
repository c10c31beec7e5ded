//! One benchmark run: every scenario, the systems alternating within each,
//! then the table, the results files and the plots.

use crate::children::find_program;
use crate::cli::RunArgs;
use crate::report::{self, Results, Row, ScenarioId, Series};
use crate::scenarios::{catchup, failover, fanout, load, migration, rooms, Plan};
use crate::signatures::SignatureCost;
use crate::systems::SystemKind;
use crate::{plot, procstat, signatures, BenchError, Result};
use std::time::Duration;

/// How long each of signing and checking is timed.
const SIGNATURE_BUDGET: Duration = Duration::from_millis(300);

/// How the numbers were taken, written under the table in results.md.
pub const METHOD: &str = "\
## How these numbers are taken

- Every system's server side runs in processes of its own; the clients run in
  the benchmark process (one tokio runtime, 2 worker threads), so send and
  receive times share one clock (ours' member subscribers and G's late
  joiners run in processes of their own; see below). Payloads are 100 bytes and carry their send
  time; latency is send to receive, at the subscriber. Runs alternate between
  the systems within each scenario, so they share the machine's conditions.
- **ours** (A-C) is a relay plus member nodes `h0` (the host) and `h1` (its
  standby successor, which must hold every message before the host
  acknowledges or delivers it), each a process running the same library as
  `chat-node` with a silent user; migration is off. Publishers are full
  nodes in the benchmark process (`chat_node::Node`: client plus dormant
  server). Subscribers that are *members* are full nodes each in a process
  of its own (the `node` subcommand), so each checks the signatures of what
  it shows (by runs, before showing it) on its own CPU, not the benchmark's;
  each tells the benchmark how many messages it has shown (every 5 ms, for
  flow control) and, after the run, the latency of every message it showed
  inside the measured window (against the benchmark's clock, whose base
  instant it is given in Unix nanoseconds). In A all 10 subscribers are
  members. Two cores cannot hold 100 verifying member processes, so B runs
  10 of its 100 subscribers (5 of 20 in the quick plan) as members and the
  others, like every subscriber of C, as *thin* clients: they speak the real
  protocol (relay registration with its key, the relay watch stream, a
  signed Hello, `chat.v1.ChatService/Session`, resume after any move)
  without a dormant server and check no signatures; the host does the same
  work per session either way. Every member of ours (publisher, host,
  standby) also receives every message; only the subscribers are counted.
- **bare tonic signed** (A, B, G; in C its server would be bare tonic's) is
  bare tonic with the least that end-to-end signatures cost: the publisher signs every message exactly as a
  chat member does (the product's `Keypair::sign_message`, with its sender
  chain: `chain_seq`, and `chain_prev` the digest of its previous message),
  and every subscriber checks every message before counting it, in batches
  of what has already arrived (at most 512), with the product's check by
  runs (`chat_proto::runs::check`: one Ed25519 signature per run of a
  sender's linked messages, the runs of several senders in one batch
  verification, one SHA-256 per message). The subscribers know the
  publishers' keys out of band (derived from the publisher's number), as a
  member knows them from the relay's name certificates. Plain bare tonic
  stays beside it, unsigned.
- **Server CPU per message** sums every server-side process (for ours: relay,
  host and standby; `host_cpu_us_per_msg` in results.json is the host alone)
  over the measured window, divided by the messages the counted subscribers
  received.
- **A** is flow-controlled the same way for every system: the publisher never
  runs more than 5,000 messages ahead of the slowest subscriber (ours' client
  also keeps at most 500 unacknowledged), so the rate is what every
  subscriber sustains with nothing dropped. The Redis publisher pipelines up
  to 64 PUBLISH commands; NATS and tonic clients batch writes themselves.
- **Signatures** (A, ours): every chat message is signed by its sender and
  checked with Ed25519 by the host (once, before sequencing) and by every
  receiver. The cost of one check is timed on one thread with the product's
  own code, and set against the host's CPU per published message and the
  clients' CPU (the benchmark process and, for ours, the member processes)
  per received message in the same run. The peers sign
  nothing, so part of the gap to them is this price of not trusting the host.
- **C memory** is the growth of the serving process's resident set (ours: the
  host) from before the subscribers connect to shortly after, divided by the
  subscribers; idle, before any message flows.
- **D** measures, per client and migration, the time between the last message
  received from the old host and the first from the new one (at 200 msg/s,
  about 5 ms of that is the ordinary gap between messages). 100 full nodes
  in this process; the host role moves through them (and `h0`, `h1`).
- **E** runs every member (16 of them) as a process of its own, so each of
  the 10 kills is a real `kill -9` of whichever process hosts. The relay
  notices when the host's lease (500 ms, renewed every 125 ms) runs out and
  promotes the successor. The time is from the kill until the last surviving
  member receives a message through the new host; lost counts acknowledged
  messages (all messages of publishers still alive) missing at a survivor.
  A second row does the same in a two-member room: 2 member processes, one
  publishing (a killed publisher's place is taken by the survivor). After
  each kill a new member process joins and receives the room's log, so the
  room has two members again; the next kill comes after the pause. The time
  is from the kill until the survivor, the new host, receives again.
- **F** measures the relay alone, in a process of its own (leases,
  migration interval and member grace of an hour, so nothing moves by
  itself). Each member registers with its own Ed25519 key over its own
  connection and keeps its watch stream open, as a node does; every member
  advertises one health server in the benchmark process, so the relay's
  reachability checks (every 3 s per member) pass. A registration without
  rooms puts the member in the room `lobby` too. Memory per member is the
  relay's RSS growth from idle until every member is registered and
  reached, over the members; memory per room is its growth from then until
  every room (3 members each, joined by JoinRoom) has its first host, over
  the rooms. Then ReportMigration calls (32 in flight, each from the room's
  host at its epoch, to the room's other member hosting fewest rooms) move
  hosts for the measured time: moves/s, their latency at the caller, and
  calls the relay refused (FAILED_PRECONDITION) apart.
- **G** times a late joiner's catch-up: a history of N messages (1,000,000
  in the full plan, 20,000 in the quick one) from 100 senders, each with
  its own key and chain, received and checked by one new member, a process
  of its own. Ours: relay, host `h0` and standby `h1`; 100 thin members,
  each in its own session, fill the room's log concurrently (each at most 32
  messages unacknowledged; the host delivers every new message to all of
  their sessions too), then a fresh full member (the `node` subcommand) joins
  and shows the whole log, each message checked by its client before it is
  shown. If the fill limit (240 s full, 30 s quick) ends the fill first, N is
  what was filled, and the row says so; the filling members do not follow a
  host that moves (on a loaded machine the host's lease can lapse under the
  fill), so a move ends the fill too, and the row says that. Bare tonic signed: the bare tonic
  server keeping every frame; this process signs N messages of 100 senders
  in turn and sends them to it, then a late joiner process receives the
  whole log and checks it by runs as above. The time runs from the joiner's
  spawn (process start, connection, for ours relay registration and a signed
  Hello) until it has shown the N-th message; peak memory is its VmHWM then,
  and its CPU time is over the same span.
";

/// Whether a peer's server program can be found.
fn available(kind: SystemKind) -> std::result::Result<(), String> {
    match kind.program() {
        Some(program) if find_program(program).is_none() => Err(format!(
            "{program} not found (Debian: apt-get install -y {program})"
        )),
        _ => Ok(()),
    }
}

/// Runs of a scenario, each its own row: E runs in a crowd, then in a
/// two-member room; the others run once.
fn runs_of(scenario: ScenarioId) -> usize {
    match scenario {
        ScenarioId::E => 2,
        _ => 1,
    }
}

/// Runs one system in one scenario (its run number `run`, see
/// [`runs_of`]); a failure becomes a row saying why.
async fn one(
    scenario: ScenarioId,
    run: usize,
    kind: SystemKind,
    plan: &Plan,
    series: &mut Series,
) -> std::result::Result<Row, Row> {
    let result = match scenario {
        ScenarioId::A => fanout::run(kind, plan.fanout).await,
        ScenarioId::B => load::run(scenario, kind, plan.latency, series).await,
        ScenarioId::C => load::run(scenario, kind, plan.many, series).await,
        ScenarioId::D => migration::run(plan.migration, series).await,
        ScenarioId::E if run == 0 => failover::run(plan.failover, series).await,
        ScenarioId::E => failover::run(plan.failover_pair, series).await,
        ScenarioId::F => rooms::run(plan.rooms).await,
        ScenarioId::G => catchup::run(kind, plan.catchup).await,
    };
    result.map_err(|e| Row::skipped(scenario, kind, format!("failed: {e}")))
}

/// Runs the benchmark.
pub async fn run(args: RunArgs) -> Result<()> {
    // The in-process members (scenario D) log too when RUST_LOG is set.
    crate::serve::init_logs();
    let plan = plan_of(&args);
    let (systems, skipped) = systems_to_run(&args)?;
    let load_before = procstat::load_average();
    let signatures = if systems.contains(&SystemKind::Ours) {
        Some(signature_cost().await?)
    } else {
        None
    };
    let mut scenarios = args.scenarios.clone();
    scenarios.sort();
    scenarios.dedup();
    let mut series = Series::default();
    let (mut rows, failures) =
        run_scenarios(&scenarios, &systems, &skipped, &plan, &mut series).await;
    if let Some(cost) = signatures {
        annotate_signatures(&mut rows, cost);
    }
    report::judge(&mut rows);
    println!("{}", report::markdown(&rows));
    let results = Results {
        finished_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        plan: if plan.quick { "quick" } else { "full" }.into(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average: (load_before, procstat::load_average()),
        signatures,
        rows,
        series,
    };
    report::write(&args.out, &results, METHOD)?;
    eprintln!(
        "chat-bench: wrote {}",
        args.out.join("results.json").display()
    );
    if !args.no_plots {
        draw_plots(&args, &results.series);
    }
    if failures > 0 {
        return Err(BenchError::Setup(format!(
            "{failures} run(s) failed; see the table"
        )));
    }
    Ok(())
}

/// A system that cannot run here, and why.
type Skipped = (SystemKind, String);

/// The plan asked for, with the command line's sizes of C and F.
fn plan_of(args: &RunArgs) -> Plan {
    let mut plan = if args.quick { Plan::QUICK } else { Plan::FULL };
    if let Some(n) = args.c_subs {
        plan.many.subs = n;
    }
    if let Some(n) = args.c_ours_subs {
        plan.many.ours_subs = Some(n);
    }
    if let Some(n) = args.f_members {
        plan.rooms.members = n;
    }
    if let Some(n) = args.f_rooms {
        plan.rooms.rooms = n;
    }
    plan
}

/// The systems asked for that can run here, and those skipped with why; a
/// missing one is an error in strict runs (`--require-peers`, or CI).
fn systems_to_run(args: &RunArgs) -> Result<(Vec<SystemKind>, Vec<Skipped>)> {
    let strict = args.require_peers || std::env::var("CI").is_ok_and(|v| v == "true");
    let mut systems = Vec::new();
    let mut skipped = Vec::new();
    for kind in SystemKind::ALL
        .into_iter()
        .filter(|k| args.systems.contains(k))
    {
        match available(kind) {
            Ok(()) => systems.push(kind),
            Err(why) if strict => return Err(BenchError::Missing(why)),
            Err(why) => {
                eprintln!("chat-bench: skipping {}: {why}", kind.label());
                skipped.push((kind, why));
            }
        }
    }
    Ok((systems, skipped))
}

/// Times Ed25519 signing and checking with the product's code.
async fn signature_cost() -> Result<SignatureCost> {
    let cost = tokio::task::spawn_blocking(|| signatures::measure(SIGNATURE_BUDGET))
        .await
        .map_err(|e| BenchError::Setup(format!("signature measurement: {e}")))??;
    eprintln!(
        "chat-bench: Ed25519 sign {:.1} us, verify {:.1} us per message",
        cost.sign_us, cost.verify_us
    );
    Ok(cost)
}

/// Every scenario, the systems alternating within each (the peers only in
/// A-C), with a row for each skipped system; the rows and how many runs
/// failed.
async fn run_scenarios(
    scenarios: &[ScenarioId],
    systems: &[SystemKind],
    skipped: &[Skipped],
    plan: &Plan,
    series: &mut Series,
) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut failures = 0;
    for &scenario in scenarios {
        let peers_apply = matches!(scenario, ScenarioId::A | ScenarioId::B | ScenarioId::C);
        // Bare tonic signed in C would repeat bare tonic's server memory.
        let signed_applies = matches!(scenario, ScenarioId::A | ScenarioId::B | ScenarioId::G);
        let kinds = systems.iter().filter(|&&k| match k {
            SystemKind::Ours => true,
            SystemKind::TonicSigned => signed_applies,
            _ => peers_apply,
        });
        for (&kind, run) in kinds.flat_map(|k| (0..runs_of(scenario)).map(move |r| (k, r))) {
            eprintln!("chat-bench: {} / {} ...", scenario.title(), kind.label());
            let started = std::time::Instant::now();
            let row = one(scenario, run, kind, plan, series)
                .await
                .unwrap_or_else(|row| {
                    failures += 1;
                    row
                });
            let took = started.elapsed().as_secs_f64();
            eprintln!("chat-bench:   {} [{took:.1} s]", row.result);
            rows.push(row);
            // Let sockets and memory settle between runs.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if peers_apply {
            for (kind, why) in skipped {
                rows.push(Row::skipped(scenario, *kind, why.clone()));
            }
        }
    }
    (rows, failures)
}

/// Sets the signature cost beside ours' CPU in A.
fn annotate_signatures(rows: &mut [Row], cost: SignatureCost) {
    for row in rows.iter_mut().filter(|r| {
        r.scenario == ScenarioId::A && r.system == SystemKind::Ours && r.skipped.is_none()
    }) {
        signatures::annotate(row, cost);
    }
}

/// Draws the plots into the output folder; a failure is only reported.
fn draw_plots(args: &RunArgs, series: &Series) {
    match plot::draw_all(&args.out, &args.font, series) {
        Ok(files) => {
            for f in files {
                eprintln!("chat-bench: drew {}", f.display());
            }
        }
        Err(e) => eprintln!("chat-bench: no plots: {e}"),
    }
}
