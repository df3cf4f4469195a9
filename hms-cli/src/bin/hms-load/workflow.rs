//! `hms-load workflow`: whole visits — book → prescribe → complete → pay, with Idempotency-Keys
//! on the booking and the payment — against the embedded default started in this process.
//!
//! Completing a visit needs its slot's time to have come, and booking needs the slot at least
//! the lead time ahead: no single instant of a real clock allows both. So the services run
//! here, on their own SQLite files in a throw-away data directory, with a clock this run sets
//! (the same `Clock` the rules read everywhere): standing still while every client books and
//! prescribes, then moved past the last booked slot while every client completes and pays.
//! Everything else is the daemon's own code path (`server::start` of all seven services).
//! A client pays a visit's bill `--pay-behind` visits after completing it (8: while billing
//! makes that bill from the completion's event, the client completes the next visits; 0: it
//! waits for each bill in turn, polling every 20 ms).
//! The run ends by checking what it did: every visit it counts has its bill PAID.

use crate::{histogram, Args, BookingPlan};
use anyhow::Context;
use hdrhistogram::Histogram;
use hms_client::models::{BillQuery, NewPayment, NewPrescription};
use hms_client::{HmsClient, ServiceUrls};
use hms_kit::auth::{Keys, Role};
use hms_kit::clock::Clock;
use hms_kit::config::Config;
use hms_kit::server::{self, Running};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A visit booked and prescribed, waiting for its time.
struct Visit {
    appointment_id: i64,
    slot_end: chrono::DateTime<chrono::Utc>,
}

/// What one phase of the run measured: per visit, the latency of that phase's steps.
struct Phase {
    hist: Histogram<u64>,
    errors: u64,
    seconds: f64,
    /// CPU time this process (services and clients) spent in the phase, in seconds.
    cpu: f64,
}

/// CPU time this process has used so far, in seconds: a visit's cost in CPU, which the
/// machine's other tenants move less than they move its rate.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    // The services' warnings and errors, on stderr (the report is on stdout).
    hms_kit::logging::init_with_writer("warn", "json", std::io::stderr);
    let dir = tempfile::tempdir().context("making a throw-away data directory")?;
    let clock = Clock::manual(chrono::Utc::now());
    let (running, client) = start_services(dir.path(), clock.clone()).await?;
    let outcome = visits(args, &client, &clock).await;
    for r in running {
        r.stop().await;
    }
    outcome
}

/// All seven services on ephemeral ports, as the embedded default runs them, with `clock`.
async fn start_services(
    dir: &std::path::Path,
    clock: Clock,
) -> anyhow::Result<(Vec<Running>, HmsClient)> {
    // The daemon's configuration (defaults, `HMS_CONFIG`, `HMS_*`: the outbox's tuning is
    // tried here), with this run's data directory, and no rate limit: one token drives every
    // request of the run.
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        rate_limit_per_second: 0,
        ..Config::load().context("reading the services' configuration")?
    };
    let mut listeners = Vec::new();
    for def in hms_testkit::EVERY_SERVICE {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a port for a service")?;
        let port = l.local_addr()?.port();
        let s = config.service_mut(def.service.name());
        s.port = Some(port);
        s.url = Some(format!("http://127.0.0.1:{port}"));
        // The run's own SQLite files, whatever database a configuration names: the run books
        // and pays thousands of visits, which belong in no operator's database.
        s.database_url = None;
        listeners.push(l);
    }
    let config = Arc::new(config);
    let secret: [u8; 32] = rand::random();
    let keys = Arc::new(Keys::from_secret(&secret));
    let mut running = Vec::new();
    for (def, l) in hms_testkit::EVERY_SERVICE.into_iter().zip(listeners) {
        let r = server::start(def, config.clone(), keys.clone(), clock.clone(), l)
            .await
            .with_context(|| format!("starting the {} service", def.service))?;
        running.push(r);
    }
    let mut urls = ServiceUrls::with_base_port("127.0.0.1", 0);
    for r in &running {
        urls.set(r.service, r.url());
    }
    let token = keys.issue(Role::Admin, "hms-load", None, chrono::Duration::hours(4));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok((running, HmsClient::with_http(http, urls).with_token(token)))
}

async fn visits(args: &Args, client: &HmsClient, clock: &Clock) -> anyhow::Result<()> {
    let seed = std::process::id();
    let plan = BookingPlan::with_fixtures(client, args, seed).await?;
    let medication = client
        .formulary()
        .await
        .context("reading the formulary")?
        .items
        .into_iter()
        .find(|m| m.active)
        .context("the formulary has no active medication")?
        .name;
    let plan = Arc::new(plan);

    // Phase 1: every client books its own doctor's next slot and prescribes at it.
    let medication = Arc::new(medication);
    let counter = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let cpu = cpu_seconds();
    let clients = (0..args.connections).map(|w| {
        let (client, plan, medication) = (client.clone(), plan.clone(), medication.clone());
        let counter = counter.clone();
        tokio::spawn(async move {
            let mut hist = histogram();
            let (mut errors, mut booked) = (0u64, Vec::new());
            let mut k = 0;
            while Instant::now() < end {
                let Some(new) = plan.appointment(w, k) else {
                    break;
                };
                k += 1;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let key = format!("visit-{seed}-{n}");
                let visit = async {
                    let a = client.book_appointment(&new, Some(&key)).await?;
                    client
                        .create_prescription(&NewPrescription {
                            prescription_id: None,
                            appointment_id: a.appointment_id,
                            patient_id: a.patient_id,
                            doctor_id: Some(a.doctor_id),
                            medication: medication.to_string(),
                            dosage: "1-0-1".into(),
                            days: 5,
                            issued_at: None,
                        })
                        .await?;
                    Ok::<_, hms_client::ClientError>(a)
                };
                match visit.await {
                    Ok(a) => {
                        let _ = hist.record(began.elapsed().as_micros() as u64);
                        booked.push(Visit {
                            appointment_id: a.appointment_id,
                            slot_end: a.slot_end,
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("booking or prescribing failed: {e}");
                        }
                    }
                }
            }
            (hist, errors, booked)
        })
    });
    let mut booking = Phase {
        hist: histogram(),
        errors: 0,
        seconds: 0.0,
        cpu: 0.0,
    };
    let mut per_client: Vec<Vec<Visit>> = Vec::new();
    for c in futures::future::join_all(clients).await {
        let (h, e, v) = c.context("a visit client failed")?;
        booking.hist.add(h)?;
        booking.errors += e;
        per_client.push(v);
    }
    booking.seconds = started.elapsed().as_secs_f64();
    booking.cpu = cpu_seconds() - cpu;

    // The visits' time comes: the clock moves past the last booked slot.
    let last = per_client
        .iter()
        .flatten()
        .map(|v| v.slot_end)
        .max()
        .context("no visit was booked")?;
    clock.set(last + chrono::Duration::minutes(1));

    // Phase 2: every client completes its visits and pays each bill once billing has made it,
    // up to `--pay-behind` visits after completing it (the cashier takes the patient before
    // while the doctor completes the next).
    let started = Instant::now();
    let cpu = cpu_seconds();
    let behind = args.pay_behind;
    let clients = per_client.into_iter().map(|mine| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut hist = histogram();
            let mut steps = [histogram(), histogram(), histogram()];
            let (mut errors, mut paid) = (0u64, 0u64);
            let mut completed = std::collections::VecDeque::new();
            let mut visits = mine.into_iter();
            loop {
                let next = visits.next();
                if let Some(v) = &next {
                    let began = Instant::now();
                    match complete(&client, v.appointment_id).await {
                        Ok(()) => {
                            let _ = steps[0].record(began.elapsed().as_micros() as u64);
                            completed.push_back((v.appointment_id, began, Instant::now()));
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("completing failed: {e:#}");
                            }
                        }
                    }
                }
                // With every visit completed, the rest are paid in turn.
                while completed.len() > if next.is_some() { behind } else { 0 } {
                    let (id, began, done) = completed.pop_front().expect("not empty");
                    match pay_when_billed(&client, seed, id).await {
                        Ok(found) => {
                            paid += 1;
                            let _ = hist.record(began.elapsed().as_micros() as u64);
                            let _ = steps[1].record((found - done).as_micros() as u64);
                            let _ = steps[2].record(found.elapsed().as_micros() as u64);
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("paying failed: {e:#}");
                            }
                        }
                    }
                }
                if next.is_none() {
                    break;
                }
            }
            (hist, steps, errors, paid)
        })
    });
    let mut steps = [histogram(), histogram(), histogram()];
    let mut settling = Phase {
        hist: histogram(),
        errors: 0,
        seconds: 0.0,
        cpu: 0.0,
    };
    let mut paid = 0;
    for c in futures::future::join_all(clients).await {
        let (h, st, e, p) = c.context("a visit client failed")?;
        settling.hist.add(h)?;
        for (all, one) in steps.iter_mut().zip(st) {
            all.add(one)?;
        }
        settling.errors += e;
        paid += p;
    }
    settling.seconds = started.elapsed().as_secs_f64();
    settling.cpu = cpu_seconds() - cpu;

    let check = paid_bills(client, paid).await?;
    let seconds = booking.seconds + settling.seconds;
    report("book + prescribe", args, &booking);
    report("complete + pay", args, &settling);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "steps of complete + pay (paying {} behind), p50 / p99: complete {:.1} / {:.1} ms, its bill found {:.1} / {:.1} ms after it, pay {:.1} / {:.1} ms",
        args.pay_behind,
        ms(&steps[0], 0.5), ms(&steps[0], 0.99),
        ms(&steps[1], 0.5), ms(&steps[1], 0.99),
        ms(&steps[2], 0.5), ms(&steps[2], 0.99),
    );
    println!(
        "workflow=visit connections={} visits={paid} errors={} seconds={seconds:.1} throughput={:.0} visits/s (book, prescribe, complete, pay) bills_paid={check}",
        args.connections,
        booking.errors + settling.errors,
        paid as f64 / seconds.max(0.001),
    );
    anyhow::ensure!(
        check == paid,
        "{paid} visits were paid but {check} bills are PAID"
    );
    Ok(())
}

async fn complete(client: &HmsClient, appointment_id: i64) -> anyhow::Result<()> {
    client
        .transition_appointment(appointment_id, "complete", None)
        .await
        .context("completing")?;
    Ok(())
}

/// Waits for a completed visit's bill (made by billing from the completion's event) and pays
/// its balance under an Idempotency-Key; returns when the bill was found.
async fn pay_when_billed(
    client: &HmsClient,
    seed: u32,
    appointment_id: i64,
) -> anyhow::Result<Instant> {
    let waited = Instant::now();
    let bill = loop {
        let page = client
            .list_bills(&BillQuery {
                appointment_id: Some(appointment_id),
                ..Default::default()
            })
            .await
            .context("looking up the bill")?;
        if let Some(b) = page.items.into_iter().next() {
            break b;
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(30),
            "no bill for appointment {appointment_id} within 30 s of asking for it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let found = Instant::now();
    client
        .pay(
            &NewPayment {
                bill_id: bill.bill_id,
                amount: bill.balance,
                method: "UPI".into(),
            },
            &format!("visit-pay-{seed}-{appointment_id}"),
        )
        .await
        .context("paying")?;
    Ok(found)
}

/// How many bills are PAID (every page), once `expected` are or 30 s have passed: a payment
/// marks its bill PAID through an event, a moment after it is answered.
async fn paid_bills(client: &HmsClient, expected: u64) -> anyhow::Result<u64> {
    let waited = Instant::now();
    loop {
        let (mut n, mut cursor) = (0, None);
        loop {
            let page = client
                .list_bills(&BillQuery {
                    status: Some("PAID".into()),
                    limit: Some(100),
                    cursor: cursor.take(),
                    ..Default::default()
                })
                .await
                .context("counting the paid bills")?;
            n += page.items.len() as u64;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if n >= expected || waited.elapsed() > Duration::from_secs(30) {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn report(name: &str, args: &Args, p: &Phase) {
    let ms = |q: f64| p.hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "phase={name} connections={} seconds={:.1} visits={} errors={} p50={:.2}ms p99={:.2}ms max={:.2}ms cpu={:.2}ms/visit",
        args.connections,
        p.seconds,
        p.hist.len(),
        p.errors,
        ms(0.50),
        ms(0.99),
        p.hist.max() as f64 / 1000.0,
        p.cpu * 1000.0 / p.hist.len().max(1) as f64,
    );
}
