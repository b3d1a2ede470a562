//! Plain lines, one per event, prefixed with the machine's name: for logs,
//! pipes and CI.

use super::Receiver;
use crate::ui::events::Event;
use crate::ui::summary::{self, Tails};

pub async fn render(mut rx: Receiver) {
    let mut tails = Tails::default();
    while let Some(ev) = rx.recv().await {
        match &ev {
            Event::Machines(_) => {}
            Event::Stage { machine, stage } => errln!("{machine}> {stage}"),
            Event::Log {
                machine: Some(m),
                line,
            } => {
                tails.push(m, line);
                errln!("{m}> {line}");
            }
            Event::Log { machine: None, line } | Event::Message(line) => errln!("{line}"),
            // Cache hits are summed up in one message.
            Event::Evaluated { cached: true, .. } => {}
            Event::Evaluated {
                machine,
                done,
                total,
                why,
                ..
            } => match why {
                Some(why) => errln!("{machine}> evaluated ({done}/{total}; {why})"),
                None => errln!("{machine}> evaluated ({done}/{total})"),
            },
            Event::Output(line) => outln!("{line}"),
            Event::Done {
                machine,
                status,
                error,
            } => match error {
                None => errln!("{machine}> {status}"),
                Some(e) => {
                    tails.push(machine, e);
                    errln!("{machine}> {status}: {e}");
                }
            },
            Event::Summary { rows, secs } => err!("{}", summary::render(rows, *secs, &tails)),
            Event::Ask { .. } => {}
        }
        if let Event::Ask {
            text,
            question,
            reply,
        } = ev
        {
            err!("{text}");
            let _ = reply.send(super::answer(&question));
        }
    }
}
