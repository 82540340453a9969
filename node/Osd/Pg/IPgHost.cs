using Appliance.Osd.Daemon;
using Appliance.Osd.Ops;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Pg;

/// <summary>What a PG uses of the OSD that hosts it: its id, store, peers, clock and classes. The seams through which
/// a test runs many OSDs in one process.</summary>
public interface IPgHost
{
    int Self { get; }

    ObjectStore Store { get; }

    IOsdPeers Peers { get; }

    ObjectClassRegistry Classes { get; }

    TimeProvider Time { get; }

    ILogger Logger { get; }

    /// <summary>The epoch of the newest osdmap this OSD has.</summary>
    uint Epoch { get; }

    /// <summary>Why a write to the PG's pool must be refused now (a full OSD among the acting set, the pool's
    /// quota), as a result code and message; null when writes may go on.</summary>
    (int Result, string Message)? WriteRefusal(int pool, IReadOnlyList<int> acting);

    /// <summary>Watchers of an object are told of a notify (the host owns the client sessions).</summary>
    Watchers Watchers { get; }

    /// <summary>The newest osdmap this OSD has (null before the first).</summary>
    Maps.OsdMap? Map { get; }

    /// <summary>Completes once the osdmap shows this OSD up through <paramref name="epoch"/> (asking the monitors).</summary>
    Task WaitUpThruAsync(uint epoch, CancellationToken ct);

    /// <summary>The PG activated at <paramref name="lastEpochStarted"/>: the OSD forgets its intervals before that.</summary>
    void TrimHistory(Maps.PgId pg, uint lastEpochStarted);

    /// <summary>A PG here took its primary's epoch for the interval (it had recorded another): counted, since it ends
    /// what the PG was doing in the interval it had.</summary>
    void IntervalTaken();
}
