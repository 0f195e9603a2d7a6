//! Table tests for the SLA file and the timers, on the shipped `mappings/sla.toml`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::policy::{Attempts, ClockKind, EntryPath, StepAction, TouchBy};
use super::timer::{Breach, State, System, Touch};
use super::*;
use crate::diagnostics::SourceText;
use crate::lifecycle::{EventKind, Stage};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn shipped() -> SlaFile {
    SlaFile::from_source(&SourceText::new("mappings/sla.toml", crate::defaults::SLA)).unwrap_or_else(|d| panic!("{d}"))
}

fn errors(text: &str) -> Vec<String> {
    SlaFile::from_source(&SourceText::new("s.toml", text))
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const TEAM: &str = r#"
[sla]
version = "t"
default_team = "paris"
[[teams]]
id = "paris"
time_zone = "Europe/Paris"
hours = { mon = "08:00-18:00", tue = "08:00-18:00" }
[[teams.members]]
email = "a@x.test"
hubspot_owner = "1"
"#;

#[test]
fn the_shipped_file_compiles_and_reads_as_its_comments_say() {
    let f = shipped();
    let on_disk = SlaFile::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/sla.toml")).unwrap();
    assert_eq!(on_disk.version, f.version);
    let (_, origin) = crate::defaults::sla(&crate::defaults::Want::Default("/nonexistent/sla.toml".into())).unwrap();
    assert_eq!(origin, crate::defaults::Origin::Embedded);

    let mql = f.policy("mql_follow_up").unwrap();
    assert_eq!(
        (mql.stage, mql.path, mql.clock),
        (Stage::Mql, EntryPath::Standard, ClockKind::Business)
    );
    assert_eq!(mql.first_touch, Duration::hours(4));
    assert_eq!(
        mql.attempts,
        Some(Attempts {
            count: 6,
            within: Duration::hours(50),
            min_interval: Duration::hours(4)
        })
    );
    let actions: Vec<&StepAction> = mql.ladder.iter().map(|s| &s.action).collect();
    assert_eq!(
        actions,
        [
            &StepAction::OwnerTask,
            &StepAction::ManagerTask,
            &StepAction::Reassign,
            &StepAction::SalesRejected("no_follow_up".into())
        ]
    );
    let demo = f.policy("demo_request").unwrap();
    assert!(demo.touches.connected_calls_only && demo.touches.by == TouchBy::Owner);
    assert!(
        demo.first_touch < mql.first_touch,
        "the shortcut gets the shortest clock"
    );

    let paris = &f.teams[f.default_team];
    assert_eq!(paris.calendar.zone, chrono_tz::Europe::Paris);
    let ana = paris.member("005000000000003AAA").unwrap();
    assert_eq!(paris.member("70003"), Some(ana), "one rep, two ids, linked in the file");
    assert_eq!((paris.capacity_of(ana), ana.weight), (Some(40), 3));
    assert_eq!(paris.capacity_of(paris.member("70001").unwrap()), Some(20));
    assert_eq!(f.team_for(Some("70005")).id, "new_york");
    assert_eq!(
        f.team_for(Some("99999")).id,
        "paris",
        "an owner in no team gets the default team"
    );
    assert_eq!(f.marketing.len(), 3);
    assert_eq!(f.marketing[1].team.as_deref(), Some("paris"));
    assert_eq!(f.marketing[2].source.as_deref(), Some("PAID_SEARCH"));
    assert_eq!(f.marketing[0].per, super::policy::Period::Month);
    // New York works two ranges a day around lunch: Monday 09:00–17:30 local is 7.5 working hours.
    let ny = &f.teams[1].calendar;
    assert_eq!(
        ny.elapsed(utc("2026-11-30T14:00:00Z"), utc("2026-11-30T22:30:00Z")),
        Duration::minutes(450)
    );
    assert_eq!(
        ny.add(utc("2026-11-30T17:00:00Z"), Duration::hours(1)),
        Some(utc("2026-11-30T19:00:00Z"))
    );
}

#[test]
fn policies_are_chosen_by_entry_stage_and_path() {
    let f = shipped();
    let ids = |stage, shortcut| {
        f.policies_for(stage, shortcut)
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(Stage::Mql, false), ["mql_follow_up"]);
    assert!(
        ids(Stage::Mql, true).is_empty(),
        "the MQL policy is for the standard path only"
    );
    assert_eq!(ids(Stage::Sql, true), ["demo_request"]);
    assert!(ids(Stage::Sql, false).is_empty());
    assert_eq!(ids(Stage::Sal, false), ["sal_follow_up"]);
    assert_eq!(ids(Stage::Sal, true), ["sal_follow_up"], "path = any covers both");
}

#[test]
fn the_worked_example_holds_friday_evening_in_paris() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let team = f.team_for(Some("70002"));
    // Friday 27 November 2026, 18:00 in Paris (UTC+1).
    let r = SlaRecord::start(p, team, "c1", utc("2026-11-27T17:00:00Z")).unwrap();
    assert_eq!(r.due_at, utc("2026-11-30T11:00:00Z"), "Monday 12:00 Paris");
    let clock = p.clock(&team.calendar);
    let steps: Vec<_> = p.ladder.iter().map(|s| clock.add(r.due_at, s.after).unwrap()).collect();
    assert_eq!(
        steps,
        [
            utc("2026-11-30T11:00:00Z"), // Monday 12:00: owner task
            utc("2026-11-30T13:00:00Z"), // Monday 14:00: manager task
            utc("2026-12-01T11:00:00Z"), // Tuesday 12:00: reassignment
            utc("2026-12-03T11:00:00Z"), // Thursday 12:00: sales-rejected
        ]
    );
    let window_end = clock.add(r.started_at, p.attempts.unwrap().within).unwrap();
    assert_eq!(
        window_end,
        utc("2026-12-04T17:00:00Z"),
        "five working days: Friday 18:00"
    );
}

#[test]
fn errors_name_file_line_column_and_field() {
    let text = format!(
        "{TEAM}{}",
        r#"
[[teams.members]]
email = "b@x.test"
hubspot_owner = "1"
[[policies]]
id = "p"
stage = "opportunity"
first_touch = "4x"
touches = { kinds = ["call", "page_view"], by = "boss" }
ladder = [{ step = "owner_task", after = "1h" }, { step = "reassign", after = "30m" }, { step = "manager_webhook", after = "2h" }]
[[marketing]]
id = "m"
mqls = 0
per = "year"
team = "tokyo"
"#
    );
    let e = errors(&text);
    let want = [
        "s.toml:15:17: teams[0].members[1].hubspot_owner: `1` is already teams[0].members[0]",
        "s.toml:18:9: policies[0].stage: `opportunity` is not an entry stage",
        "s.toml:19:15: policies[0].first_touch: `4x` has an unknown unit",
        "s.toml:20:30: policies[0].touches.kinds[1]: `page_view` is not a touch",
        "s.toml:20:49: policies[0].touches.by: `boss`",
        "s.toml:21:79: policies[0].ladder[1].after: steps climb in order",
        "s.toml:21:88: policies[0].ladder[2]: manager_webhook needs webhook",
        "s.toml:24:8: marketing[0].mqls: must be a whole number from 1",
        "s.toml:25:7: marketing[0].per: `year`",
        "s.toml:26:8: marketing[0].team: no team `tokyo`",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  does not start with\n{want}");
    }
}

#[test]
fn a_word_no_setting_takes_is_located_and_lists_the_words_it_takes() {
    let text = format!(
        "{TEAM}{}",
        r#"
[[policies]]
id = "p"
stage = "sql"
path = "sideways"
clock = "lunar"
first_touch = "4h"
touches = { kinds = ["call"], by = "boss" }
"#
    );
    let e = errors(&text);
    let want = [
        "s.toml:16:8: policies[0].path: `sideways`: use any, standard or shortcut",
        "s.toml:17:9: policies[0].clock: `lunar`: use business or wall",
        "s.toml:19:36: policies[0].touches.by: `boss`: use owner, owner_or_team or anyone",
    ];
    assert_eq!(e, want, "{e:#?}");
}

#[test]
fn team_errors_are_located() {
    let text = r#"
[sla]
version = "t"
default_team = "nowhere"
[[teams]]
id = "x"
time_zone = "Europe/Pariss"
hours = { mon = "18:00-08:00", tue = ["08:00-12:00", "11:00-13:00"], wed = "8h-5h" }
holidays = ["2026-13-01"]
capacity = -2
[[teams.members]]
email = "nobody"
absences = [{ from = "2026-12-24", to = "2026-12-20" }]
"#;
    let e = errors(text);
    let want = [
        "s.toml:4:16: sla.default_team: no team `nowhere` (teams: x)",
        "s.toml:7:13: teams[0].time_zone: `Europe/Pariss` is not an IANA time zone",
        "s.toml:8:17: teams[0].hours.mon: `18:00-08:00` ends before it starts",
        "s.toml:8:38: teams[0].hours.tue: working intervals overlap",
        "s.toml:8:76: teams[0].hours.wed: `8h-5h` is not working hours",
        "s.toml:9:13: teams[0].holidays[0]: `2026-13-01` is not a date",
        "s.toml:10:12: teams[0].capacity: must be a whole number from 1 (got -2)",
        "s.toml:11:1: teams[0].members[0]: give hubspot_owner, salesforce_user or both",
        "s.toml:12:9: teams[0].members[0].email: not an email address",
        "s.toml:13:41: teams[0].members[0].absences[0].to: ends (2026-12-20) before it starts (2026-12-24)",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  does not start with\n{want}");
    }
}

#[test]
fn absences_and_hours_decide_availability() {
    let f = shipped();
    let paris = &f.teams[0];
    let jules = paris.member("70003").unwrap();
    let chloe = paris.member("70002").unwrap();
    #[rustfmt::skip]
    let cases = [
        (jules, "2026-12-21T09:00:00Z", Availability::Absent { until: NaiveDate::from_ymd_opt(2027, 1, 3).unwrap() }),
        (jules, "2027-01-03T22:59:00Z", Availability::Absent { until: NaiveDate::from_ymd_opt(2027, 1, 3).unwrap() }),
        (jules, "2027-01-04T08:00:00Z", Availability::Available),
        (chloe, "2026-12-21T09:00:00Z", Availability::Available),
        (chloe, "2026-12-21T17:00:00Z", Availability::OffHours),
        (chloe, "2026-12-25T09:00:00Z", Availability::OffHours),
    ];
    for (m, at, want) in cases {
        assert_eq!(paris.availability(m, utc(at)), want, "{} at {at}", m.email);
    }
}

// ---- timers ---------------------------------------------------------------------------

fn touch(system: System, id: &str, kind: EventKind, at: &str, by: &str) -> Touch {
    Touch {
        system,
        id: id.into(),
        kind,
        at: utc(at),
        outbound: true,
        connected: true,
        by: Some(by.into()),
    }
}

/// The MQL timer of the worked example: started Friday 18:00 Paris, due Monday 12:00 (11:00Z).
fn mql_timer(f: &SlaFile) -> SlaRecord {
    SlaRecord::start(
        f.policy("mql_follow_up").unwrap(),
        &f.teams[0],
        "c1",
        utc("2026-11-27T17:00:00Z"),
    )
    .unwrap()
}

#[test]
fn a_touch_in_time_by_the_owner_or_the_team_counts_and_others_do_not() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let team = &f.teams[0];
    let r = mql_timer(&f);
    let now = utc("2026-11-30T12:00:00Z");
    let call = |by: &str| touch(System::HubSpot, "e1", EventKind::Call, "2026-11-30T09:00:00Z", by);
    let inbound = Touch {
        outbound: false,
        ..call("70002")
    };
    let before_start = touch(System::HubSpot, "e0", EventKind::Call, "2026-11-27T16:00:00Z", "70002");
    let note = touch(System::HubSpot, "e2", EventKind::Note, "2026-11-30T09:00:00Z", "70002");
    #[rustfmt::skip]
    let cases: [(&str, Vec<Touch>, Option<&str>); 7] = [
        ("the owner calls", vec![call("70002")], Some("2026-11-30T09:00:00Z")),
        ("the owner, by their Salesforce id", vec![call("005000000000002AAA")], Some("2026-11-30T09:00:00Z")),
        ("a teammate calls", vec![call("70004")], Some("2026-11-30T09:00:00Z")),
        ("someone outside the team", vec![call("70005")], None),
        ("an inbound call is not a touch", vec![inbound], None),
        ("before the clock started", vec![before_start], None),
        ("a note is not a touch", vec![note], None),
    ];
    for (why, touches, first) in cases {
        let a = assess(p, team, &r, &touches, Some("70002"), now);
        assert_eq!(a.record.first_touch_at, first.map(utc), "{why}");
    }
}

#[test]
fn a_late_first_touch_is_still_measured_and_the_breach_stays() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let r = mql_timer(&f);
    // Tuesday 10:00 Paris: 4h after Monday 12:00 plus Tuesday's 2h = 12 working hours from the start.
    let late = [touch(
        System::Salesforce,
        "00T1",
        EventKind::Call,
        "2026-12-01T09:00:00Z",
        "70002",
    )];
    let a = assess(p, &f.teams[0], &r, &late, Some("70002"), utc("2026-12-01T10:00:00Z"));
    assert_eq!(a.state, State::Breached(Breach::NoFirstTouch));
    assert_eq!(a.record.breached_at, Some(r.due_at));
    assert_eq!(a.record.first_touch_at, Some(utc("2026-12-01T09:00:00Z")));
    assert_eq!(a.time_to_first_touch, Some(Duration::hours(12)));
    assert!(a.due_steps.is_empty(), "a touch stops the ladder, however late");
}

#[test]
fn the_same_call_in_both_crms_counts_once_and_attempts_keep_their_interval() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let r = mql_timer(&f);
    let hs = |id: &str, at: &str| touch(System::HubSpot, id, EventKind::Call, at, "70002");
    let sf = |id: &str, at: &str| touch(System::Salesforce, id, EventKind::Call, at, "005000000000002AAA");
    #[rustfmt::skip]
    let cases: [(&str, Vec<Touch>, u32); 6] = [
        ("one call logged in both, 3 minutes apart", vec![hs("e1", "2026-11-30T08:00:00Z"), sf("00T1", "2026-11-30T08:03:00Z")], 1),
        ("the same id twice", vec![hs("e1", "2026-11-30T08:00:00Z"), hs("e1", "2026-11-30T08:00:00Z")], 1),
        ("two calls in HubSpot ten minutes apart, under the interval", vec![hs("e1", "2026-11-30T08:00:00Z"), hs("e2", "2026-11-30T08:10:00Z")], 1),
        ("4 working hours apart", vec![hs("e1", "2026-11-30T08:00:00Z"), hs("e2", "2026-11-30T12:00:00Z")], 2),
        ("Monday 17:00 and Tuesday 11:00 are 4 working hours apart", vec![hs("e1", "2026-11-30T16:00:00Z"), sf("00T2", "2026-12-01T10:00:00Z")], 2),
        ("Monday 17:00 and Tuesday 10:00 are not", vec![hs("e1", "2026-11-30T16:00:00Z"), sf("00T2", "2026-12-01T09:00:00Z")], 1),
    ];
    for (why, touches, attempts) in cases {
        let a = assess(p, &f.teams[0], &r, &touches, Some("70002"), utc("2026-12-01T12:00:00Z"));
        assert_eq!(a.record.attempts, attempts, "{why}");
    }
    // A call and an email at the same minute are two touches, not one.
    let email = touch(
        System::Salesforce,
        "00T3",
        EventKind::SalesEmail,
        "2026-11-30T08:01:00Z",
        "70002",
    );
    let a = assess(
        p,
        &f.teams[0],
        &r,
        &[hs("e1", "2026-11-30T08:00:00Z"), email],
        Some("70002"),
        utc("2026-11-30T12:00:00Z"),
    );
    assert_eq!(a.counted.len(), 2);
}

#[test]
fn met_when_the_attempts_are_done_in_the_window_breached_when_the_window_closes_short() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let r = mql_timer(&f);
    // Six attempts 5 working hours apart from Monday 09:00 Paris: Mon 09, 14, Tue 09, 14, Wed 09, 14.
    let times = [
        "2026-11-30T08:00:00Z",
        "2026-11-30T13:00:00Z",
        "2026-12-01T08:00:00Z",
        "2026-12-01T13:00:00Z",
        "2026-12-02T08:00:00Z",
        "2026-12-02T13:00:00Z",
    ];
    let touches: Vec<Touch> = times
        .iter()
        .enumerate()
        .map(|(i, at)| touch(System::HubSpot, &format!("e{i}"), EventKind::Call, at, "70002"))
        .collect();
    let a = assess(p, &f.teams[0], &r, &touches, Some("70002"), utc("2026-12-02T14:00:00Z"));
    assert_eq!(
        (a.state, a.record.met_at),
        (State::Met, Some(utc("2026-12-02T13:00:00Z")))
    );
    assert_eq!(a.next_check, None, "nothing left to time");

    // Five only: running until the window ends Friday 18:00, then breached at that instant.
    let five = &touches[..5];
    let a = assess(p, &f.teams[0], &r, five, Some("70002"), utc("2026-12-03T10:00:00Z"));
    assert_eq!(
        (a.state, a.next_check),
        (State::Running, Some(utc("2026-12-04T17:00:00Z")))
    );
    let a = assess(p, &f.teams[0], &r, five, Some("70002"), utc("2026-12-04T17:00:00Z"));
    assert_eq!(a.state, State::Breached(Breach::TooFewAttempts));
    assert_eq!(a.record.breached_at, Some(utc("2026-12-04T17:00:00Z")));
    assert!(a.due_steps.is_empty(), "the ladder is for a missed first touch");
}

#[test]
fn the_ladder_climbs_one_step_at_a_time_and_each_step_once() {
    let f = shipped();
    let p = f.policy("mql_follow_up").unwrap();
    let mut r = mql_timer(&f);
    let team = &f.teams[0];
    let at = |now: &str, r: &SlaRecord| assess(p, team, r, &[], Some("70002"), utc(now));
    let idx = |a: &Assessment| a.due_steps.iter().map(|s| s.index).collect::<Vec<_>>();
    #[rustfmt::skip]
    let climb = [
        // (now, steps due, next check)
        ("2026-11-30T10:59:00Z", vec![], Some("2026-11-30T11:00:00Z")),
        ("2026-11-30T11:00:00Z", vec![0], Some("2026-11-30T13:00:00Z")),
        ("2026-11-30T13:30:00Z", vec![1], Some("2026-12-01T11:00:00Z")),
        ("2026-12-01T11:00:00Z", vec![2], Some("2026-12-03T11:00:00Z")),
        ("2026-12-03T11:00:00Z", vec![3], None),
        ("2026-12-09T11:00:00Z", vec![], None),
    ];
    for (now, steps, next) in climb {
        let a = at(now, &r);
        assert_eq!((idx(&a), a.next_check), (steps.clone(), next.map(utc)), "at {now}");
        for s in &a.due_steps {
            r.mark_done(s.index);
        }
        // Asking again at the same time (a retry, another replica) finds nothing new.
        assert!(at(now, &r).due_steps.is_empty(), "again at {now}");
    }
    // A sweep that was down all weekend catches up on every step due, in order, once.
    let fresh = mql_timer(&f);
    let a = at("2026-12-01T12:00:00Z", &fresh);
    assert_eq!(idx(&a), [0, 1, 2]);
    assert_eq!(a.due_steps[2].action, StepAction::Reassign);
    assert_eq!(a.due_steps[2].at, utc("2026-12-01T11:00:00Z"));
}

#[test]
fn the_timer_follows_the_owner_and_connected_calls_only_means_it() {
    let f = shipped();
    let demo = f.policy("demo_request").unwrap();
    let team = &f.teams[0];
    // A demo request on Monday 10:00 Paris: due 10:15.
    let r = SlaRecord::start(demo, team, "c2", utc("2026-11-30T09:00:00Z")).unwrap();
    assert_eq!(r.due_at, utc("2026-11-30T09:15:00Z"));
    let by_old = touch(System::HubSpot, "e1", EventKind::Call, "2026-11-30T09:05:00Z", "70002");
    let unanswered = Touch {
        connected: false,
        ..touch(
            System::Salesforce,
            "00T9",
            EventKind::Call,
            "2026-11-30T09:06:00Z",
            "70004",
        )
    };
    let now = utc("2026-11-30T09:10:00Z");
    // by = owner: the previous owner's call does not count for the new owner.
    assert_eq!(
        assess(demo, team, &r, std::slice::from_ref(&by_old), Some("70002"), now)
            .record
            .first_touch_at,
        Some(by_old.at)
    );
    assert_eq!(
        assess(demo, team, &r, &[by_old], Some("70004"), now)
            .record
            .first_touch_at,
        None
    );
    assert_eq!(
        assess(demo, team, &r, &[unanswered], Some("70004"), now)
            .record
            .first_touch_at,
        None
    );
}

#[test]
fn leadsync_check_reads_the_sla_file_beside_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    let config = dir.path().join("leadsync.toml");
    std::fs::write(&config, "").unwrap();
    std::fs::write(dir.path().join("mappings/lifecycle.toml"), crate::defaults::LIFECYCLE).unwrap();
    std::fs::write(dir.path().join("mappings/salesforce.toml"), crate::defaults::SALESFORCE).unwrap();
    let code = |c| format!("{:?}", crate::cli::check(Some(c), false));
    // No SLA file: the embedded default is checked and passes.
    assert_eq!(code(&config), format!("{:?}", std::process::ExitCode::SUCCESS));
    std::fs::write(dir.path().join("mappings/sla.toml"), crate::defaults::SLA).unwrap();
    assert_eq!(code(&config), format!("{:?}", std::process::ExitCode::SUCCESS));
    let broken = crate::defaults::SLA.replacen("time_zone = \"Europe/Paris\"", "time_zone = \"Europe/Pariss\"", 1);
    std::fs::write(dir.path().join("mappings/sla.toml"), broken).unwrap();
    assert_eq!(code(&config), format!("{:?}", std::process::ExitCode::from(2)));
    let want = crate::defaults::Want::Default(dir.path().join("mappings/sla.toml"));
    let err = crate::defaults::sla(&want).unwrap_err().to_string();
    assert!(
        err.contains("mappings/sla.toml:39:13: teams[0].time_zone: `Europe/Pariss`"),
        "{err}"
    );
}

#[test]
fn a_wall_clock_policy_counts_every_minute_and_anyone_can_touch() {
    let text = format!(
        "{TEAM}{}",
        r#"
[[policies]]
id = "night"
stage = "sql"
path = "shortcut"
clock = "wall"
first_touch = "5m"
touches = { kinds = ["chat"], by = "anyone" }
"#
    );
    let f = SlaFile::from_source(&SourceText::new("s.toml", text)).unwrap_or_else(|d| panic!("{d}"));
    let p = f.policy("night").unwrap();
    // Saturday 23:00 Paris: the wall clock does not wait for Monday.
    let r = SlaRecord::start(p, &f.teams[0], "c", utc("2026-11-28T22:00:00Z")).unwrap();
    assert_eq!(r.due_at, utc("2026-11-28T22:05:00Z"));
    let chat = touch(
        System::HubSpot,
        "e",
        EventKind::Chat,
        "2026-11-28T22:04:00Z",
        "someone-else",
    );
    let a = assess(p, &f.teams[0], &r, &[chat], Some("1"), utc("2026-11-28T22:10:00Z"));
    assert_eq!(
        (a.state, a.time_to_first_touch),
        (State::Met, Some(Duration::minutes(4)))
    );
}
