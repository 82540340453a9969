namespace Appliance.Osd.Pg;

/// <summary>What the primary may do after asking the OSDs that may hold a PG's newest history.</summary>
public enum PeeringVerdict
{
    /// <summary>Every interval that may have acknowledged writes is represented by an answer: recover and activate.</summary>
    Proceed,
    /// <summary>An interval that may have acknowledged writes has no member that answered, and some of its members are
    /// down: wait for them (<see cref="PeeringPlan.WaitingFor"/>).</summary>
    Down,
    /// <summary>The OSDs that answered cannot be trusted with the newest history (each one is mid-backfill, or the
    /// PG's history before the last activation anyone knows of is unknown): wait for an OSD that holds it.</summary>
    Incomplete,
}

/// <summary>What one OSD told the primary of a PG (its own copy included).</summary>
public sealed record PeerAnswer(bool Exists, bool Backfilling, PgInfo Info);

/// <summary>The outcome of <see cref="PeeringDecision.Decide"/>.</summary>
public sealed record PeeringPlan(PeeringVerdict Verdict, IReadOnlyList<int> WaitingFor, string Reason, IReadOnlyList<PastInterval> Prior, uint LastEpochStarted)
{
    /// <summary>The PG's history before the last activation anyone knows of is unknown to the OSDs that answered: the
    /// primary then asks every OSD of the map.</summary>
    public bool HistoryUnknown { get; init; }
}

/// <summary>
/// The primary's rule for when a PG may go active (Ceph's PriorSet and its down/incomplete checks), as a pure function.
/// The intervals that matter are those since the newest activation anyone answering knows of (last_epoch_started:
/// that peering gathered everything before it) which may have acknowledged writes. A write is acknowledged only when
/// every member of its interval's acting set has it, so one answer from a member of each such interval is enough to
/// find every acknowledged write; an interval none of whose members answered may hold writes nobody else has, and
/// the PG must not serve until one of them is back.
/// </summary>
public static class PeeringDecision
{
    /// <summary>Whom to ask: the acting set and every up member of a past interval that may have gone rw.</summary>
    public static SortedSet<int> ProbeSet(IEnumerable<int> acting, IEnumerable<PastInterval> intervals, Func<int, bool> isUp)
    {
        var probe = new SortedSet<int>(acting.Where(o => o >= 0));
        foreach (var i in intervals)
        {
            if (!i.MaybeWentRw)
            {
                continue;
            }
            foreach (var o in i.Acting)
            {
                if (o >= 0 && isUp(o))
                {
                    probe.Add(o);
                }
            }
        }
        return probe;
    }

    /// <summary>
    /// Decides from the merged past intervals (known from <paramref name="knownFrom"/>), the pool's creation epoch,
    /// the answers (by OSD) and who is up now.
    /// </summary>
    /// <param name="poolCreated">The epoch the PG's pool was created at.</param>
    /// <param name="knownFrom">The epoch from which <paramref name="intervals"/> are known without a gap.</param>
    /// <param name="intervals">The past intervals every answer and this OSD know of, merged.</param>
    /// <param name="answers">What each OSD that answered holds (the primary's own copy included).</param>
    /// <param name="isUp">Whether an OSD is up in the current map.</param>
    /// <param name="everyOsd">Every OSD of the map, when the primary asked all of them (it does when the history is
    /// unknown): if every one answered and none holds the PG, nothing of it exists anywhere and it is created.</param>
    public static PeeringPlan Decide(uint poolCreated, uint knownFrom, IReadOnlyList<PastInterval> intervals,
        IReadOnlyDictionary<int, PeerAnswer> answers, Func<int, bool> isUp, IReadOnlyCollection<int>? everyOsd = null)
    {
        var les = answers.Values.Where(a => a.Exists).Select(a => a.Info.LastEpochStarted).DefaultIfEmpty(0u).Max();
        var prior = intervals.Where(i => i.MaybeWentRw && i.Last >= les).ToList();
        var historyFrom = Math.Max(les, poolCreated);
        if (knownFrom > historyFrom)
        {
            if (everyOsd is not null)
            {
                var silent = everyOsd.Where(o => !answers.ContainsKey(o)).Order().ToList();
                if (silent.Count == 0 && answers.Values.All(a => !a.Exists))
                {
                    return new PeeringPlan(PeeringVerdict.Proceed, [], "", [], les) { HistoryUnknown = true };
                }
                if (silent.Count > 0)
                {
                    return new PeeringPlan(PeeringVerdict.Incomplete, silent,
                        $"its intervals before epoch {knownFrom} are unknown to every OSD that answered and none holds it; waiting for {string.Join(", ", silent.Select(o => $"osd.{o}"))}, which may",
                        prior, les) { HistoryUnknown = true };
                }
            }
            return new PeeringPlan(PeeringVerdict.Incomplete, [],
                $"its intervals before epoch {knownFrom} are unknown to every OSD that answered, and none knows of an activation since (last_epoch_started {les}): waiting for an OSD that holds its history",
                prior, les) { HistoryUnknown = true };
        }
        var waiting = new SortedSet<int>();
        var untrusted = new List<PastInterval>();
        foreach (var i in prior)
        {
            var members = i.Acting.Where(o => o >= 0).Distinct().ToList();
            if (members.Any(o => answers.TryGetValue(o, out var a) && !a.Backfilling))
            {
                continue;
            }
            var missing = members.Where(o => !answers.ContainsKey(o)).ToList();
            if (missing.Count > 0)
            {
                waiting.UnionWith(missing);
            }
            else
            {
                untrusted.Add(i);
            }
        }
        if (waiting.Count > 0)
        {
            return new PeeringPlan(PeeringVerdict.Down, [.. waiting],
                $"an interval that may have acknowledged writes has no member that answered; waiting for {string.Join(", ", waiting.Select(o => $"osd.{o}" + (isUp(o) ? "" : " (down)")))}",
                prior, les);
        }
        if (untrusted.Count > 0)
        {
            return new PeeringPlan(PeeringVerdict.Incomplete, [],
                $"every member that answered for interval {untrusted[0]} is mid-backfill: none holds its history",
                prior, les);
        }
        var holders = answers.Values.Where(a => a.Exists).ToList();
        if (holders.Count > 0 && holders.All(a => a.Backfilling))
        {
            return new PeeringPlan(PeeringVerdict.Incomplete, [], "every OSD holding it is mid-backfill: none holds its history", prior, les);
        }
        return new PeeringPlan(PeeringVerdict.Proceed, [], "", prior, les);
    }
}
