//! The one adapter from an aggregate's pure decision to cqrs-es: every aggregate
//! decides (`decide(&self, command) -> Result<Vec<Event>, Error>`, no I/O) and writes what
//! it decided to the event sink in order. Written once here and expanded inside each
//! `impl Aggregate` (a blanket impl of a foreign trait is not allowed).

/// Expands to `Aggregate::handle` for an aggregate with an inherent
/// `fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>`.
macro_rules! handle_by_decide {
    () => {
        async fn handle(
            &mut self,
            command: Self::Command,
            _services: &Self::Services,
            sink: &::cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), Self::Error> {
            for event in self.decide(command)? {
                sink.write(event, self).await;
            }
            Ok(())
        }
    };
}

pub(crate) use handle_by_decide;
