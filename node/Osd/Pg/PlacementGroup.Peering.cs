using Appliance.Osd.Daemon;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Pg;

// Peering and recovery, run by the primary at the start of each interval. Steps: ask every member of the acting set
// what it holds (info, log, missing objects, unfinished backfill); take as authoritative the member with the newest
// history among those whose log can be trusted (not mid-backfill); bring the primary to it (merge the logs and pull
// the objects it lacks, or copy the whole PG when the logs do not overlap); bring every other member to the primary
// the same way (push); then activate them all and serve. A member that does not answer, or answers from another
// interval, makes the attempt start over after a short backoff; a new interval cancels it. Every step is idempotent:
// a member records the objects it lacks durably (the missing set) before they are copied, so an interrupted
// recovery is resumed, never mistaken for a complete copy.
//
// What this does not do yet (issue 10): past intervals (a member set that shares no OSD with the last active one
// is not detected: with three OSDs and min_size 2 any two sets overlap), serving while recovering, strays as
// sources, throttling.
public sealed partial class PlacementGroup
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(10);

    private sealed class RetryPeering(string message) : Exception(message);

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

    private async Task PeerOnceAsync(PgInterval i)
    {
        var ct = i.Ended.Token;
        var self = _host.Self;
        var members = i.Acting.Where(o => o >= 0).Distinct().ToArray();
        var notes = new Dictionary<int, PgNotify> { [self] = Query(self, new PgQuery(Id, i.Since)) };
        foreach (var m in members.Where(m => m != self))
        {
            var n = PgNotify.FromBytes(await AskAsync(i, m, OsdMessageType.PgQuery, new PgQuery(Id, i.Since).ToBytes()));
            if (n.Result != OsdResult.Ok)
            {
                throw new RetryPeering($"osd.{m} is not in interval {i.Since} yet");
            }
            notes[m] = n;
        }
        _recovering = true;
        try
        {
            var candidates = notes.Where(n => n.Value.Exists && !n.Value.Backfilling).ToList();
            if (candidates.Count == 0 && notes.Values.Any(n => n.Exists && n.Backfilling))
            {
                SetPhase(i, PgPhase.Incomplete);
                Logger.LogWarning("{Pg}: incomplete: every member holding it is mid-backfill; waiting for a member with its history", Id);
                return;
            }
            if (candidates.Count > 0)
            {
                var auth = candidates.OrderByDescending(n => n.Value.Info.LastUpdate).ThenByDescending(n => n.Key == self)
                    .ThenBy(n => n.Value.Missing.Count).First();
                if (auth.Key != self && auth.Value.Info.LastUpdate > Log.Head)
                {
                    await CatchUpFromAsync(i, auth.Key, auth.Value);
                }
                await RecoverOwnMissingAsync(i, notes);
            }
            else if (!Exists)
            {
                // Nobody holds the PG: it is new (issue 10 adds past intervals to tell new from lost).
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
            var info = new PgInfo(Id, Log.Head, Log.Head, Log.Tail, i.Since, i.Since);
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
