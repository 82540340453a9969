using System.Collections.Concurrent;
using Appliance.Maps;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Daemon;

// Copies this OSD no longer needs: every PG of a removed pool, and a PG it holds but is not in the acting set of (a stray) is deleted once its primary
// says the PG is active+clean in an interval without this OSD. From that activation on, peering never asks for the
// intervals this copy belongs to (they end before the PG's last_epoch_started), so nothing depends on it. The deletion
// runs in the background, a page of objects per transaction with a pause between pages, so client I/O keeps the disk.
// While a PG is being deleted it is not hosted (a query is answered "nothing here"); if a new map makes this OSD a
// member again meanwhile, the PG is hosted afresh once the deletion is done and peering backfills it.
public sealed partial class OsdService
{
    private readonly ConcurrentDictionary<PgId, bool> _deleting = new();
    // Collections left without their meta object by an interrupted deletion (found at start).
    private readonly List<PgId> _orphans = [];

    /// <summary>Objects removed per transaction when a stray PG is deleted.</summary>
    public int StrayDeletePage { get; init; } = 64;

    /// <summary>Pause between two pages of a stray PG's deletion (the throttle).</summary>
    public TimeSpan StrayDeletePause { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>PGs deleted as strays since start (for tests and stats).</summary>
    public int StraysDeleted => _straysDeleted;

    private int _straysDeleted;

    /// <summary>The primary's answer to a stray: Ok when <paramref name="pg"/> is active+clean here in an interval
    /// without <paramref name="stray"/> that started at or after <paramref name="strayInterval"/>.</summary>
    private PeerResult CleanWithout(PgId pg, int stray, uint strayInterval)
    {
        if (_pgs.GetValueOrDefault(pg) is not { } p || p.Interval is not { } i || i.Primary != Self)
        {
            return new PeerResult(OsdResult.TryAgain, $"osd.{Self} is not the primary of {pg}");
        }
        if (i.Acting.Contains(stray))
        {
            return new PeerResult(OsdResult.TryAgain, $"osd.{stray} is a member of {pg}");
        }
        if (p.StateText != "active+clean" || p.Info.LastEpochStarted < i.Since)
        {
            return new PeerResult(OsdResult.TryAgain, $"{pg} is {p.StateText}");
        }
        return new PeerResult(OsdResult.Ok, "");
    }

    /// <summary>
    /// One pass over the stray PGs this OSD holds: asks each one's primary whether it is clean without this OSD, and
    /// deletes those it may (one at a time, throttled). Returns how many were deleted. Called by the daemon's
    /// housekeeping (and tests).
    /// </summary>
    public async Task<int> RemoveCleanStraysAsync(CancellationToken ct)
    {
        var deleted = 0;
        foreach (var id in _orphans.ToList())
        {
            if (_pgs.ContainsKey(id) || !_deleting.TryAdd(id, true))
            {
                continue;
            }
            try
            {
                await DeleteCollectionAsync(id, ct);
                _orphans.Remove(id);
                deleted++;
            }
            finally
            {
                _deleting.TryRemove(id, out _);
                if (_map is { } map)
                {
                    Rehost(map, id);
                }
            }
        }
        // Every PG of a pool that was removed goes, whatever its state (its pool's data is deleted by design).
        if (_map is { } current)
        {
            foreach (var pg in _pgs.Values.Where(p => !current.Pools.ContainsKey(p.Id.Pool)).ToList())
            {
                ct.ThrowIfCancellationRequested();
                if (!Detach(pg, pg.Interval))
                {
                    continue;
                }
                try
                {
                    await DeleteCollectionAsync(pg.Id, ct);
                    deleted++;
                    Logger.LogInformation("{Pg}: deleted (its pool was removed)", pg.Id);
                }
                finally
                {
                    _deleting.TryRemove(pg.Id, out _);
                }
            }
        }
        foreach (var pg in _pgs.Values.Where(p => p.Phase == PgPhase.Stray && p.Exists).ToList())
        {
            ct.ThrowIfCancellationRequested();
            if (pg.Interval is not { } i || i.Primary < 0 || i.Acting.Contains(Self))
            {
                continue;
            }
            PeerResult answer;
            try
            {
                answer = PeerResult.FromBytes(await Peers.RequestAsync(i.Primary, OsdMessageType.PgCleanQuery, new PgQuery(pg.Id, i.Since).ToBytes(),
                    TimeSpan.FromSeconds(10), ct));
            }
            catch (Exception e) when (e is PeerUnavailableException or TimeoutException or IOException or Wire.Codec.WireFormatException)
            {
                continue;
            }
            if (answer.Result != OsdResult.Ok || !Detach(pg, i))
            {
                continue;
            }
            try
            {
                await DeleteCollectionAsync(pg.Id, ct);
                deleted++;
                Interlocked.Increment(ref _straysDeleted);
                Logger.LogInformation("{Pg}: stray copy deleted (active+clean on osd.{Primary} without this OSD)", pg.Id, i.Primary);
            }
            finally
            {
                _deleting.TryRemove(pg.Id, out _);
                // A map that came meanwhile may make this OSD a member again: host it now, fresh.
                if (_map is { } map)
                {
                    Rehost(map, pg.Id);
                }
            }
        }
        return deleted;
    }

    /// <summary>Stops hosting a stray PG before its copy is deleted, unless the map changed its interval meanwhile.</summary>
    private bool Detach(PlacementGroup pg, PgInterval? seen)
    {
        lock (_mapLock)
        {
            if (pg.Interval != seen || pg.Phase != PgPhase.Stray || !_pgs.TryRemove(new KeyValuePair<PgId, PlacementGroup>(pg.Id, pg)))
            {
                return false;
            }
            _deleting[pg.Id] = true;
        }
        pg.Stop();
        return true;
    }

    private void Rehost(OsdMap map, PgId id)
    {
        lock (_mapLock)
        {
            if (!map.Pools.TryGetValue(id.Pool, out var pool) || id.Seed >= (uint)pool.PgNum || _map != map)
            {
                return;
            }
            var m = map.MapPg(id);
            int[] acting = [.. m.Acting];
            if (!acting.Contains(Self) || !_history.TryGetValue(id, out var past))
            {
                return;
            }
            var pg = _pgs.GetOrAdd(id, pid => new PlacementGroup(this, pid, pool.Size, pool.MinSize, (uint)pool.PgNum));
            pg.OnMap(map.Epoch, acting, m.ActingPrimary, pool.Size, pool.MinSize, (uint)pool.PgNum, [.. m.Up], past, PastIntervals.UpFromOf(map, acting));
        }
    }

    /// <summary>Removes a PG's collection: its meta object first (so a restart mid-way never loads a partial copy as
    /// the PG), then its objects a page per transaction, then the collection.</summary>
    private async Task DeleteCollectionAsync(PgId id, CancellationToken ct)
    {
        var c = id.Collection;
        if (!Store.CollectionExists(c))
        {
            return;
        }
        if (Store.Stat(c, PgMeta.MetaObject) is not null)
        {
            await Store.SubmitAsync(new Transaction().Remove(c, PgMeta.MetaObject), ct);
        }
        while (true)
        {
            var page = await Store.ListAsync(c, null, StrayDeletePage);
            if (page.Objects.Count == 0)
            {
                break;
            }
            var t = new Transaction();
            foreach (var o in page.Objects)
            {
                t.Remove(c, o.Id);
            }
            await Store.SubmitAsync(t, ct);
            await Task.Delay(StrayDeletePause, Time, ct);
        }
        await Store.SubmitAsync(new Transaction().RemoveCollection(c), ct);
    }
}
