using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Wire.Codec;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Daemon;

// The osdmaps: the catch-up of the past intervals before the boot (history only), then the subscription, whose maps
// are applied live (a jump's skipped epochs go to the history only).
public sealed partial class OsdDaemon
{
    private async Task FollowMapsAsync(CancellationToken ct)
    {
        OsdMap? have = null;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await foreach (var map in _subscription!.WatchOsdMapAsync(have, ct))
                {
                    if (have is null)
                    {
                        // The first map since the boot: the epochs between the history caught up before it and this
                        // one (few: the boot's own, and what came meanwhile) go to the past intervals first.
                        await TrackEpochsAsync(StartOfHistory(map), map.Epoch, ct);
                    }
                    else if (map.Epoch > have.Epoch + 1)
                    {
                        // A jump (the monitors no longer had the increments): the epochs between are fetched and
                        // brought to the past intervals in order, so PG intervals start where they did for the peers
                        // that saw each epoch; only the jump map itself changes intervals here.
                        await TrackEpochsAsync(have.Epoch + 1, map.Epoch, ct);
                    }
                    have = map;
                    Apply(map);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is MonitorsUnavailableException or IOException or TimeoutException or WireFormatException)
            {
                _log.LogWarning("{Osd}: osdmap subscription interrupted ({Error}); resuming", Entity, e.Message);
                await Task.Delay(500, ct);
            }
        }
    }

    /// <summary>
    /// Before it boots, this OSD brings the past intervals of its PGs (and of every PG, for the OSDs that ask it) to the
    /// newest osdmap: the epochs since the oldest one its stored PGs know their intervals through, or since the oldest
    /// pool's creation, at most the 500 the monitors keep. Done while the monitors still show it down, this costs no
    /// one anything: once up, clients and peers count on it at once. (Done after the boot, every PG of which it is a
    /// member waited for the whole catch-up, and every interval of those epochs in which it was a primary peered
    /// for nothing and made its members take that interval's epoch, ending their current one.)
    /// </summary>
    private async Task CatchUpBeforeBootAsync(CancellationToken ct)
    {
        OsdMap? newest = null;
        await foreach (var map in _subscription!.WatchOsdMapAsync(null, ct))
        {
            newest = map;
            break;
        }
        if (newest is null)
        {
            return;
        }
        var started = System.Diagnostics.Stopwatch.StartNew();
        var from = StartOfHistory(newest);
        await TrackEpochsAsync(from, newest.Epoch, ct);
        _service!.TrackHistory(newest);
        if (from < newest.Epoch)
        {
            _log.LogInformation("{Osd}: past intervals brought from epoch {From} to {To} before booting ({Ms} ms)", Entity, from, newest.Epoch,
                started.ElapsedMilliseconds);
        }
    }

    /// <summary>The first epoch the past intervals still need before <paramref name="map"/>: after the newest one they
    /// were brought to, else (at a start) where the stored PGs' knowledge ends or the oldest pool began, bounded by the
    /// 500 epochs the monitors keep.</summary>
    private uint StartOfHistory(OsdMap map)
    {
        if (_service!.HistoryEpoch is { } through)
        {
            return through + 1;
        }
        var from = ResumeFrom(map) ?? map.Epoch;
        return Math.Max(from, map.Epoch > 500 ? map.Epoch - 499 : 1);
    }

    private void Apply(OsdMap map)
    {
        _peers!.OnMap(map);
        _service!.ApplyMap(map);
        _heartbeatNet!.OnMap(map);
        _heartbeater!.SetPeers(_service.HeartbeatPeers);
        if (_boot is { } boot && map.FindOsd(_options.Id) is { Up: true } self && self.Address == boot.Address)
        {
            // Recorded from every map in order (a periodic look could miss a short up period entirely).
            Interlocked.Exchange(ref _upFrom, self.UpFrom);
        }
    }

    /// <summary>Where the maps this OSD applies at a start begin: the oldest epoch its stored PGs know their past
    /// intervals through, and the creation of the oldest pool (so PGs it never held are known from their start).</summary>
    private uint? ResumeFrom(OsdMap map)
    {
        uint? from = _service!.ResumeEpoch;
        if (map.Pools.Count > 0)
        {
            var created = Math.Max(1, map.Pools.Values.Min(p => p.CreatedEpoch));
            from = from is { } f ? Math.Min(f, created) : created;
        }
        return from;
    }

    /// <summary>Fetches epochs [<paramref name="from"/>, <paramref name="to"/>) and brings the past intervals to each
    /// (<see cref="OsdService.TrackHistory"/>: no PG changes interval for them). One the monitors no longer keep ends the
    /// walk: the next map then starts the intervals' knowledge over, and a PG whose interval this OSD names otherwise
    /// than its peers takes its primary's (PlacementGroup.AdoptPrimaryInterval).</summary>
    private async Task TrackEpochsAsync(uint from, uint to, CancellationToken ct)
    {
        for (var epoch = from; epoch < to; epoch++)
        {
            OsdMap past;
            try
            {
                past = await _mon!.GetOsdMapAsync(epoch, ct);
            }
            catch (MonRequestFailedException e)
            {
                _log.LogInformation("{Osd}: osdmap epoch {Epoch} is not kept any more ({Error}); jumping to {To}", Entity, epoch, e.Message, to);
                return;
            }
            _service!.TrackHistory(past);
        }
    }
}
