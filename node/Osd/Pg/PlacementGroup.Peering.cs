using Appliance.Osd.Daemon;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Pg;

// Peering and recovery, run by the primary at the start of each interval. Steps: ask every OSD that may hold the
// PG's newest history — the acting set, and the up members of every past interval that may have acknowledged writes
// (the answers bring their own past intervals, which may name more OSDs to ask); decide whether the PG may go active
// (PeeringDecision: one answer from a member of every such interval since the last activation anyone knows of, else
// down or incomplete, waiting); take as authoritative the OSD with the newest history among those whose log can be
// trusted (not mid-backfill), strays included; bring the primary to it (merge the logs and pull the objects it lacks,
// or copy the whole PG when the logs do not overlap); bring every other member to the primary the same way (push);
// have the monitors record this OSD as up through the interval (up_thru), so the maps show the interval may have
// gone rw; then activate them all and serve. A member that does not answer, or answers from another interval, makes
// the attempt start over after a short backoff; a new interval cancels it. Every step is idempotent: a member records
// the objects it lacks durably (the missing set) before they are copied, so an interrupted recovery is resumed, never
// mistaken for a complete copy.
//
// Not yet: serving while recovering, throttling.
public sealed partial class PlacementGroup
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How often a PG that waits (down, incomplete) asks again without a new map.</summary>
    private static readonly TimeSpan WaitingRecheck = TimeSpan.FromSeconds(5);

    private sealed class RetryPeering(string message) : Exception(message);

    private volatile bool _recovering;
    private int[] _up = [];
    private TaskCompletionSource _kick = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PeeringPlan? _plan;
    private IReadOnlyList<int> _probed = [];

    /// <summary>What this OSD knows of the PG's past intervals (null before the first map, or loaded without any).</summary>
    public PastIntervals? Past { get; private set; }

    /// <summary>The primary's last peering verdict (null before one): what it waits for, and why.</summary>
    public PeeringPlan? Plan => _plan;

    /// <summary>Takes the up set and past intervals of a new map; kept with the PG when a new interval began.</summary>
    private void TakeHistory(int[] up, PastIntervals past)
    {
        PastIntervals? had;
        bool exists;
        lock (_lock)
        {
            _up = up;
            had = Past;
            Past = past;
            exists = Exists;
        }
        if (exists && (had is null || had.CurrentSince != past.CurrentSince || had.KnownFrom != past.KnownFrom))
        {
            var t = new Transaction();
            PgMeta.SetPast(t, Id, past);
            _ = PersistAsync(t);
        }
    }

    private async Task PersistAsync(Transaction t)
    {
        try
        {
            await _host.Store.SubmitAsync(t);
        }
        catch (Exception e) when (e is StoreException or ObjectDisposedException or InvalidOperationException)
        {
            // The next interval change or peering step writes them again; until then a restart knows less (safe side).
            Logger.LogWarning("{Pg}: past intervals not kept: {Error}", Id, e.Message);
        }
    }

    /// <summary>Wakes a primary that waits for OSDs (a new map may bring them).</summary>
    private void Kick()
    {
        TaskCompletionSource k;
        lock (_lock)
        {
            k = _kick;
            _kick = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        k.TrySetResult();
    }

    private string StateWords()
    {
        var i = _interval;
        var up = _up;
        var remapped = i is not null && up.Length > 0 && !up.AsSpan().SequenceEqual(i.Acting) ? "+remapped" : "";
        var undersized = i is not null && i.Acting.Count(o => o >= 0) < Size;
        return _phase switch
        {
            PgPhase.Active when undersized => "active+undersized+degraded" + remapped,
            PgPhase.Active => remapped.Length > 0 ? "active" + remapped : "active+clean",
            PgPhase.Peering when !Exists && _recovering => "creating",
            PgPhase.Peering => _recovering ? "peering+recovering" + remapped : "peering" + remapped,
            PgPhase.Undersized => "undersized+degraded+peered" + remapped,
            PgPhase.Incomplete => "incomplete" + remapped,
            PgPhase.Down => "down" + remapped,
            PgPhase.Replica => "replica",
            _ => "stray",
        };
    }

    /// <summary>What <c>appliance pg query</c> shows of this PG here: state, interval, info, past intervals, and what
    /// the primary waits for.</summary>
    public string QueryText()
    {
        var i = _interval;
        var past = Past;
        var plan = _plan;
        var sb = new System.Text.StringBuilder();
        sb.Append("state: ").AppendLine(StateText);
        if (i is not null)
        {
            sb.Append("interval since epoch ").Append(i.Since).Append(": up [").Append(string.Join(",", _up)).Append("] acting [")
                .Append(string.Join(",", i.Acting)).Append("] primary osd.").Append(i.Primary).AppendLine();
        }
        var info = Info;
        sb.Append("info: last_update ").Append(Log.Head).Append(", log_tail ").Append(Log.Tail).Append(", last_epoch_started ")
            .Append(info.LastEpochStarted).Append(", objects ").Append(Objects).Append(", missing ").Append(Missing.Count)
            .Append(Backfilling ? ", backfilling" : "").AppendLine();
        if (past is not null)
        {
            sb.Append("past intervals (known from epoch ").Append(past.KnownFrom).Append("):").AppendLine(past.Intervals.Count == 0 ? " none" : "");
            foreach (var p in past.Intervals)
            {
                sb.Append("  ").AppendLine(p.ToString());
            }
        }
        if (_probed.Count > 0)
        {
            sb.Append("probed: ").AppendLine(string.Join(", ", _probed.Select(o => $"osd.{o}")));
        }
        if (plan is not null && plan.Verdict != PeeringVerdict.Proceed)
        {
            sb.Append(plan.Verdict == PeeringVerdict.Down ? "down: " : "incomplete: ").AppendLine(plan.Reason);
            if (plan.WaitingFor.Count > 0)
            {
                sb.Append("waiting for: ").AppendLine(string.Join(", ", plan.WaitingFor.Select(o => $"osd.{o}")));
            }
        }
        return sb.ToString();
    }

    private async Task PeerLoopAsync(PgInterval i)
    {
        var delay = TimeSpan.FromMilliseconds(20);
        while (!i.Ended.IsCancellationRequested)
        {
            try
            {
                await PeerOnceAsync(i);
                return;
            }
            catch (OperationCanceledException) when (i.Ended.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RetryPeering or PeerUnavailableException or TimeoutException or IOException or Wire.Codec.WireFormatException)
            {
                Logger.LogDebug("{Pg}: peering in interval {Since} retries: {Reason}", Id, i.Since, e.Message);
            }
            catch (Exception e)
            {
                Logger.LogError(e, "{Pg}: peering in interval {Since} failed", Id, i.Since);
            }
            try
            {
                await Task.Delay(delay, _host.Time, i.Ended.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 1000));
        }
    }

    private async Task<byte[]> AskAsync(PgInterval i, int osd, ushort type, byte[] payload) =>
        await _host.Peers.RequestAsync(osd, type, payload, PeerTimeout, i.Ended.Token);

    private bool IsUp(int osd) => _host.Map?.FindOsd(osd) is { Up: true };

    /// <summary>
    /// Asks the acting set and every up OSD of a past interval that may have gone rw, until the answers name no one
    /// new. A member of the acting set that does not answer makes the attempt start over; another OSD that does not
    /// answer is left out (the decision then counts its intervals as unheard).
    /// </summary>
    private async Task<Dictionary<int, PgNotify>> ProbeAsync(PgInterval i, int[] members)
    {
        var self = _host.Self;
        var notes = new Dictionary<int, PgNotify> { [self] = Query(self, new PgQuery(Id, i.Since)) };
        var failed = new HashSet<int>();
        while (true)
        {
            var (_, intervals) = PastIntervals.Merge(notes.Values.Select(n => n.Past).Append(Past).OfType<PastIntervals>());
            var ask = PeeringDecision.ProbeSet(members, intervals, IsUp).Where(o => !notes.ContainsKey(o) && !failed.Contains(o)).ToList();
            if (ask.Count == 0)
            {
                _probed = [.. notes.Keys.Order()];
                return notes;
            }
            foreach (var o in ask)
            {
                PgNotify n;
                try
                {
                    n = PgNotify.FromBytes(await AskAsync(i, o, OsdMessageType.PgQuery, new PgQuery(Id, i.Since).ToBytes()));
                }
                catch (Exception e) when (!members.Contains(o) && e is PeerUnavailableException or TimeoutException or IOException)
                {
                    failed.Add(o);
                    continue;
                }
                if (n.Result != OsdResult.Ok)
                {
                    if (members.Contains(o))
                    {
                        throw new RetryPeering($"osd.{o} is not in interval {i.Since} yet");
                    }
                    failed.Add(o);
                    continue;
                }
                notes[o] = n;
            }
        }
    }

    /// <summary>Asks <paramref name="osds"/> that have not answered yet; one that cannot is left out.</summary>
    private async Task ProbeMoreAsync(PgInterval i, Dictionary<int, PgNotify> notes, IEnumerable<int> osds)
    {
        foreach (var o in osds.Where(o => !notes.ContainsKey(o)).ToList())
        {
            try
            {
                var n = PgNotify.FromBytes(await AskAsync(i, o, OsdMessageType.PgQuery, new PgQuery(Id, i.Since).ToBytes()));
                if (n.Result == OsdResult.Ok)
                {
                    notes[o] = n;
                }
            }
            catch (Exception e) when (e is PeerUnavailableException or TimeoutException or IOException)
            {
                // Counted as silent: the decision waits for it.
            }
        }
        _probed = [.. notes.Keys.Order()];
    }

    private async Task PeerOnceAsync(PgInterval i)
    {
        var ct = i.Ended.Token;
        var self = _host.Self;
        var members = i.Acting.Where(o => o >= 0).Distinct().ToArray();
        var kick = _kick.Task;
        var notes = await ProbeAsync(i, members);
        var (knownFrom, intervals) = PastIntervals.Merge(notes.Values.Select(n => n.Past).Append(Past).OfType<PastIntervals>());
        var created = _host.Map?.Pools.GetValueOrDefault(Id.Pool)?.CreatedEpoch ?? 0;
        var answers = notes.ToDictionary(n => n.Key, n => new PeerAnswer(n.Value.Exists, n.Value.Backfilling, n.Value.Info));
        var plan = PeeringDecision.Decide(created, knownFrom, intervals, answers, IsUp);
        if (plan.HistoryUnknown && _host.Map is { } map)
        {
            // Nobody that answered knows the PG's whole past: ask every OSD of the map whether it holds the PG.
            await ProbeMoreAsync(i, notes, map.Osds.Values.Where(o => o.Up).Select(o => o.Id));
            answers = notes.ToDictionary(n => n.Key, n => new PeerAnswer(n.Value.Exists, n.Value.Backfilling, n.Value.Info));
            (knownFrom, intervals) = PastIntervals.Merge(notes.Values.Select(n => n.Past).Append(Past).OfType<PastIntervals>());
            plan = PeeringDecision.Decide(created, knownFrom, intervals, answers, IsUp, [.. map.Osds.Keys]);
        }
        var previous = _plan;
        _plan = plan;
        if (plan.Verdict != PeeringVerdict.Proceed)
        {
            SetPhase(i, plan.Verdict == PeeringVerdict.Down ? PgPhase.Down : PgPhase.Incomplete);
            if (previous?.Reason != plan.Reason)
            {
                Logger.LogWarning("{Pg}: {Verdict}: {Reason}", Id, plan.Verdict == PeeringVerdict.Down ? "down" : "incomplete", plan.Reason);
            }
            // Not serving: wait for a map that may bring an OSD back, or look again after a while.
            await Task.WhenAny(kick, Task.Delay(WaitingRecheck, _host.Time, ct));
            ct.ThrowIfCancellationRequested();
            throw new RetryPeering($"{plan.Verdict}: {plan.Reason}");
        }
        _recovering = true;
        try
        {
            var candidates = notes.Where(n => n.Value.Exists && !n.Value.Backfilling).ToList();
            if (candidates.Count > 0)
            {
                var auth = candidates.OrderByDescending(n => n.Value.Info.LastUpdate).ThenByDescending(n => n.Key == self)
                    .ThenByDescending(n => members.Contains(n.Key)).ThenBy(n => n.Value.Missing.Count).First();
                if (auth.Key != self && auth.Value.Info.LastUpdate > Log.Head)
                {
                    await CatchUpFromAsync(i, auth.Key, auth.Value);
                }
                await RecoverOwnMissingAsync(i, notes);
            }
            else if (!Exists)
            {
                // Nobody holds the PG and every interval that could have served answered: it is new.
                var create = new Transaction();
                CreateIfMissing(create);
                if (create.Count > 0)
                {
                    await _host.Store.SubmitAsync(create, ct);
                }
                lock (_lock)
                {
                    Exists = true;
                }
            }
            foreach (var m in members.Where(m => m != self))
            {
                ct.ThrowIfCancellationRequested();
                await BringMemberAsync(i, m, notes[m]);
            }
            // Before anything can be acknowledged in this interval, the maps must say this primary was up through it:
            // a later peering then sees it as an interval that may have gone rw (and one whose primary never got this
            // far as one that did not).
            await _host.WaitUpThruAsync(i.Since, ct);
            // last_epoch_started moves only when the PG will serve: a PG peered below min_size gathered the history
            // but acknowledges nothing, and the intervals before it must still be asked for after it.
            var les = members.Length >= MinSize ? i.Since : plan.LastEpochStarted;
            var info = new PgInfo(Id, Log.Head, Log.Head, Log.Tail, les, i.Since);
            foreach (var m in members.Where(m => m != self))
            {
                var backfilled = !notes[m].Exists || notes[m].Backfilling || !Overlaps(notes[m].Info);
                var activate = new PgUpdate(Id, i.Since, PgUpdateKind.Activate, info, [], backfilled ? [.. Log.Entries] : [], []);
                var r = PeerResult.FromBytes(await AskAsync(i, m, OsdMessageType.PgActivate, activate.ToBytes()));
                if (r.Result != OsdResult.Ok)
                {
                    throw new RetryPeering($"osd.{m} refused activation: {r.Message}");
                }
            }
            await ApplyUpdateAsync(new PgUpdate(Id, i.Since, PgUpdateKind.Activate, info, [], [], []));
            CountObjects();
        }
        finally
        {
            _recovering = false;
        }
        if (members.Length < MinSize)
        {
            SetPhase(i, PgPhase.Undersized);
            Logger.LogInformation("{Pg}: peered with {Members} of min_size {MinSize} members: holding I/O", Id, members.Length, MinSize);
            return;
        }
        SetPhase(i, PgPhase.Active);
        // Every member has the whole log now: a change that failed before (a member refused it, an interval ended
        // under it) is settled, and method calls must not wait for its commit (they wait for what was submitted).
        ResetCommitted(Log.Head);
        i.Activated.TrySetResult();
        Logger.LogDebug("{Pg}: active in interval {Since} at {Head}", Id, i.Since, Log.Head);
    }

    private void SetPhase(PgInterval i, PgPhase phase)
    {
        lock (_lock)
        {
            if (_interval == i)
            {
                _phase = phase;
            }
        }
    }

    /// <summary>Whether a member's log overlaps the primary's: it can catch up by the entries after its head.</summary>
    private bool Overlaps(PgInfo member) => member.LastUpdate >= Log.Tail;

    /// <summary>
    /// Compares a member's log with the authoritative one: the divergent entries (the member's, after the last
    /// entry both share: changes never acknowledged, which the authoritative history does not have), the entries it
    /// lacks, and the objects either touches (the member must get them as the authoritative copy has them).
    /// </summary>
    internal static (List<Eversion> Divergent, List<PgLogEntry> Append, HashSet<(string, uint)> Missing) Compare(
        IReadOnlyList<PgLogEntry> member, Eversion memberTail, Eversion memberHead, PgLog auth)
    {
        // With no entry in common, the member's history up to its tail is (overlap is checked first).
        var common = member.Count == 0 ? memberHead : memberTail;
        var divergent = new List<Eversion>();
        var missing = new HashSet<(string, uint)>();
        for (var k = member.Count - 1; k >= 0; k--)
        {
            var e = member[k];
            if (e.Version <= auth.Tail || auth.Contains(e.Version))
            {
                common = e.Version;
                break;
            }
            divergent.Add(e.Version);
            foreach (var o in e.Objects)
            {
                missing.Add((o.Name, o.Hash));
            }
        }
        var append = auth.After(common).ToList();
        foreach (var e in append)
        {
            foreach (var o in e.Objects)
            {
                missing.Add((o.Name, o.Hash));
            }
        }
        return (divergent, append, missing);
    }

    /// <summary>The primary takes the authoritative member's history: merges logs and pulls what it lacks, or copies
    /// the whole PG from it when the logs do not overlap.</summary>
    private async Task CatchUpFromAsync(PgInterval i, int auth, PgNotify authNote)
    {
        var authLog = new PgLog(authNote.Info.LogTail, authNote.Log);
        Logger.LogInformation("{Pg}: catching up from osd.{Auth} ({Head} → {AuthHead})", Id, auth, Log.Head, authLog.Head);
        if (Exists && !Backfilling && Log.Head >= authLog.Tail)
        {
            var (divergent, append, missing) = Compare(Log.Entries, Log.Tail, Log.Head, authLog);
            var info = Info with { LastUpdate = authLog.Head, LogTail = Eversion.Max(Log.Tail, Eversion.Zero) };
            await ApplyUpdateAsync(new PgUpdate(Id, i.Since, PgUpdateKind.Merge, info with { LogTail = Log.Tail }, divergent, append, [.. missing]));
            foreach (var (name, hash) in missing)
            {
                await PullObjectAsync(i, auth, new ObjectId(hash, name));
            }
            return;
        }
        await ApplyUpdateAsync(new PgUpdate(Id, i.Since, PgUpdateKind.BeginBackfill, PgInfo.Empty(Id), [], [], []));
        ObjectId? after = null;
        while (true)
        {
            var request = new PullRequest(Id, i.Since, after?.Name ?? "", after?.Hash ?? 0, 0, null, List: true);
            var page = PgObjectList.FromBytes(await AskAsync(i, auth, OsdMessageType.PullRequest, request.ToBytes()));
            if (page.Result != OsdResult.Ok)
            {
                throw new RetryPeering($"osd.{auth} refused to list {Id}");
            }
            foreach (var (name, hash) in page.Objects)
            {
                await PullObjectAsync(i, auth, new ObjectId(hash, name));
            }
            if (page.Next is not { } next)
            {
                break;
            }
            after = new ObjectId(next.Hash, next.Name);
        }
        var activated = new PgInfo(Id, authLog.Head, authLog.Head, authLog.Tail, Info.LastEpochStarted, i.Since);
        await ApplyUpdateAsync(new PgUpdate(Id, i.Since, PgUpdateKind.Activate, activated, [], [.. authLog.Entries], []));
    }

    /// <summary>Objects the primary itself still misses (from an interrupted recovery): pulled from a member that
    /// has the same history and does not miss them. None has them: the PG stays incomplete.</summary>
    private async Task RecoverOwnMissingAsync(PgInterval i, Dictionary<int, PgNotify> notes)
    {
        foreach (var oid in Missing.Keys.ToList())
        {
            var source = notes.Where(n => n.Key != _host.Self && n.Value.Exists && !n.Value.Backfilling && n.Value.Info.LastUpdate >= Log.Head
                    && !n.Value.Missing.Contains((oid.Name, oid.Hash)))
                .Select(n => (int?)n.Key).FirstOrDefault();
            if (source is null)
            {
                SetPhase(i, PgPhase.Incomplete);
                throw new RetryPeering($"object {oid.Name} is missing here and on every member (unfound)");
            }
            await PullObjectAsync(i, source.Value, oid);
        }
    }

    private async Task PullObjectAsync(PgInterval i, int from, ObjectId oid)
    {
        long offset = 0;
        string? omapAfter = null;
        while (true)
        {
            var request = new PullRequest(Id, i.Since, oid.Name, oid.Hash, offset, omapAfter, List: false);
            var chunk = ObjectChunk.FromBytes(await AskAsync(i, from, OsdMessageType.PullRequest, request.ToBytes()));
            if (chunk.Size < 0)
            {
                throw new RetryPeering($"osd.{from} refused a pull of {oid.Name}");
            }
            await ApplyChunkAsync(chunk);
            if (chunk.Last)
            {
                return;
            }
            offset = chunk.DataOffset + chunk.Data.Length;
            if (chunk.Omap.Count > 0)
            {
                omapAfter = chunk.Omap[^1].Key;
            }
        }
    }

    private async Task PushObjectAsync(PgInterval i, int to, ObjectId oid)
    {
        long offset = 0;
        string? omapAfter = null;
        while (true)
        {
            var chunk = await ReadChunkAsync(i.Since, oid, offset, omapAfter);
            var r = PeerResult.FromBytes(await AskAsync(i, to, OsdMessageType.Push, chunk.ToBytes()));
            if (r.Result != OsdResult.Ok)
            {
                throw new RetryPeering($"osd.{to} refused a push of {oid.Name}: {r.Message}");
            }
            if (chunk.Last)
            {
                return;
            }
            offset = chunk.DataOffset + chunk.Data.Length;
            if (chunk.Omap.Count > 0)
            {
                omapAfter = chunk.Omap[^1].Key;
            }
        }
    }

    /// <summary>Brings one member to the primary's history: the missing entries and objects, or a whole copy.</summary>
    private async Task BringMemberAsync(PgInterval i, int m, PgNotify note)
    {
        if (note.Exists && !note.Backfilling && Overlaps(note.Info))
        {
            var (divergent, append, missing) = Compare(note.Log, note.Info.LogTail, note.Info.LastUpdate, Log);
            foreach (var x in note.Missing)
            {
                missing.Add(x);
            }
            if (divergent.Count == 0 && append.Count == 0 && missing.Count == 0)
            {
                return;
            }
            Logger.LogInformation("{Pg}: recovering osd.{Osd}: {Objects} objects, {Entries} entries behind, {Divergent} divergent",
                Id, m, missing.Count, append.Count, divergent.Count);
            var merge = new PgUpdate(Id, i.Since, PgUpdateKind.Merge, note.Info with { LastUpdate = Log.Head, LogTail = Eversion.Min(note.Info.LogTail, Log.Tail) },
                divergent, append, [.. missing]);
            var r = PeerResult.FromBytes(await AskAsync(i, m, OsdMessageType.PgActivate, merge.ToBytes()));
            if (r.Result != OsdResult.Ok)
            {
                throw new RetryPeering($"osd.{m} refused the merge: {r.Message}");
            }
            foreach (var (name, hash) in missing)
            {
                await PushObjectAsync(i, m, new ObjectId(hash, name));
            }
            return;
        }
        if (!note.Exists && Log.Head == Eversion.Zero)
        {
            // A PG that never took a write (being created): nothing to copy, and the activation creates the member's
            // copy. Marking it mid-backfill first would leave it so for good if this interval ended before the
            // activation (an OSD marked down while a pool is created), and a PG whose every holder is mid-backfill is
            // incomplete: it would wait for a history that never existed.
            return;
        }
        if (Log.Head > Eversion.Zero)
        {
            Logger.LogInformation("{Pg}: backfilling osd.{Osd} (its log does not overlap ours, or it has no copy)", Id, m);
        }
        var begin = new PgUpdate(Id, i.Since, PgUpdateKind.BeginBackfill, PgInfo.Empty(Id), [], [], []);
        var b = PeerResult.FromBytes(await AskAsync(i, m, OsdMessageType.PgActivate, begin.ToBytes()));
        if (b.Result != OsdResult.Ok)
        {
            throw new RetryPeering($"osd.{m} refused the backfill: {b.Message}");
        }
        ObjectId? after = null;
        while (true)
        {
            var page = ListPage(after);
            foreach (var (name, hash) in page.Objects)
            {
                await PushObjectAsync(i, m, new ObjectId(hash, name));
            }
            if (page.Next is not { } next)
            {
                break;
            }
            after = new ObjectId(next.Hash, next.Name);
        }
    }

    private void CountObjects()
    {
        long objects = 0, bytes = 0;
        ObjectId? after = null;
        while (true)
        {
            var page = _host.Store.List(Id.Collection, after, 1024);
            foreach (var o in page.Objects)
            {
                if (!PgMeta.IsInternal(o.Id.Name))
                {
                    objects++;
                    bytes += o.Size;
                }
            }
            if (page.Next is null)
            {
                break;
            }
            after = page.Next;
        }
        lock (_lock)
        {
            Objects = objects;
            Bytes = bytes;
        }
    }
}
