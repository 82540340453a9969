using System.Globalization;
using System.Text;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Paxos.Core;
using Appliance.Maps.Client;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Daemon;

/// <summary>
/// The cluster maps as the state machine the Paxos log drives. A log entry is a command with who proposed it and
/// the proposer's wall-clock time; every monitor executes it with the same pure function
/// (<see cref="MonOperations.Execute"/>) on the same state, so all reach the same maps and the same result. A
/// refused administrative command is committed too, so the audit log records it.
/// </summary>
public sealed class MonitorStateMachine : IStateMachine
{
    private const byte EntryVersion = 1;
    /// <summary>Osdmap epochs kept (increments for subscribers, whole maps for <see cref="MonQuery.OsdMapAt"/>) by
    /// default: mon_min_osdmap_epochs sets it.</summary>
    public const int OsdHistoryLength = 500;
    private ClusterState _state;
    private OsdLiveness _liveness;
    // The encoded osdmap increments of the last epochs this member applied, oldest first (consecutive epochs).
    private readonly Queue<(uint Epoch, byte[] Bytes)> _osdHistory = new();
    // The whole osdmaps of the last epochs this member holds, oldest first (consecutive, ending at the current one).
    // Immutable maps share what did not change, so this costs far less than that many maps.
    private readonly Queue<OsdMap> _osdMaps = new();

    /// <summary>The monitors' shared key, handed (sealed) to a node that spends its join token, so it can run a
    /// monitor; null: joining nodes get client.admin's key only.</summary>
    private readonly Secret? _monKey;

    /// <summary>What a joining node gets is sealed under its token's key with this purpose (<see cref="SecretBox"/>).</summary>
    public const string JoinPurpose = "appliance join keyring";

    public MonitorStateMachine(ClusterState initial, Secret? monKey = null)
    {
        _monKey = monKey;
        _state = initial;
        _liveness = OsdLiveness.Start(DateTimeOffset.UnixEpoch); // the same on every member
        _osdMaps.Enqueue(initial.Osd);
    }

    /// <summary>The committed maps as of the last applied entry (read it from the daemon's loop only).</summary>
    public ClusterState State => _state;

    /// <summary>Bumped on every applied entry that changed the maps (for subscribers).</summary>
    public long Applied { get; private set; }

    /// <summary>Whether an <see cref="OsdTick"/> at <paramref name="now"/> would change the maps (an OSD's beacons
    /// stopped, one has been down long enough to go out, or a blocklist entry expired): the leader proposes a tick
    /// only then.</summary>
    public bool TickWouldChange(DateTimeOffset now) =>
        (_state.Osd.Osds.Count > 0 || !_state.Osd.Blocklist.IsEmpty) && MonOperations.Execute(_state, _liveness, new OsdTick(), "mon", now).Increment is { IsEmpty: false };

    /// <summary>The log entry for a command.</summary>
    public static byte[] EncodeEntry(MonCommand command, string who, DateTimeOffset now)
    {
        using var w = new WireWriter();
        var mark = w.BeginStruct(EntryVersion, 1);
        w.WriteString(who);
        w.WriteI64(now.ToUnixTimeMilliseconds());
        MonCommandCodec.Encode(w, command);
        w.EndStruct(mark);
        return w.ToArray();
    }

    public byte[] Apply(long index, ReadOnlySpan<byte> command)
    {
        MonCommand cmd;
        string who;
        DateTimeOffset now;
        try
        {
            var r = new WireReader(command);
            var scope = r.BeginStruct(EntryVersion, "monitor log entry");
            who = r.ReadString();
            now = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadI64());
            cmd = MonCommandCodec.Decode(ref r);
            r.EndStruct(scope);
        }
        catch (WireFormatException e)
        {
            // Deterministic: every member refuses the same bytes the same way.
            return new MonReply(MonReplyStatus.Invalid, 0, $"unreadable command: {e.Message}").Encode();
        }
        var tokenKey = cmd is JoinConsume ? _state.Auth.Find(who)?.Key : null;
        var outcome = MonOperations.Execute(_state, _liveness, cmd, who, now);
        _liveness = outcome.Liveness;
        if (outcome.Error is { } error)
        {
            if (cmd.IsAdministrative)
            {
                _state = _state.Apply(MonOperations.AuditRejected(_state, cmd, who, now, error));
            }
            return new MonReply(MonReplyStatus.Failed, (int)error.Code, error.Message).Encode();
        }
        if (outcome.Increment is { IsEmpty: false } inc)
        {
            _state = _state.Apply(inc);
            Applied++;
            if (inc.Osd is { } osd)
            {
                var keep = (int)_state.Config.GetInt("mon_min_osdmap_epochs");
                _osdHistory.Enqueue((osd.Epoch, MapCodec.ToBytes(osd.Encode)));
                _osdMaps.Enqueue(_state.Osd);
                while (_osdHistory.Count > keep)
                {
                    _osdHistory.Dequeue();
                }
                while (_osdMaps.Count > keep)
                {
                    _osdMaps.Dequeue();
                }
            }
        }
        var data = outcome.Data;
        if (cmd is JoinConsume && tokenKey is not null && data is not null)
        {
            // The keys go out sealed under the token's secret, which only the joining node holds: a crc-mode
            // connection never carries them in the clear. (The reply is not replicated state: sealing it with a random
            // nonce on each member is fine.)
            var keyring = Keyring.Parse(System.Text.Encoding.UTF8.GetString(data), "join reply");
            if (_monKey is not null)
            {
                keyring.Add(new KeyringEntry(ClusterConf.MonEntity, _monKey, new Dictionary<string, string> { ["mon"] = "allow *" }));
            }
            data = SecretBox.Seal(tokenKey, JoinPurpose, System.Text.Encoding.UTF8.GetBytes(keyring.Format()));
        }
        return new MonReply(MonReplyStatus.Ok, 0, outcome.Message, Data: data).Encode();
    }

    /// <summary>A query: <see cref="MonQuery"/> byte then the argument.</summary>
    public static byte[] EncodeQuery(MonQuery query, string argument)
    {
        using var w = new WireWriter();
        w.WriteU8((byte)query);
        w.WriteString(argument);
        return w.ToArray();
    }

    public byte[] Query(ReadOnlySpan<byte> query)
    {
        try
        {
            var r = new WireReader(query);
            var kind = (MonQuery)r.ReadU8();
            var argument = r.ReadString();
            if (kind is MonQuery.OsdMapSince or MonQuery.MonMapSince)
            {
                if (!uint.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var since))
                {
                    return new MonReply(MonReplyStatus.Invalid, 0, $"a subscription names an epoch, not '{argument}'").Encode();
                }
                var update = kind == MonQuery.OsdMapSince ? OsdMapSince(since) : MonMapSince(since);
                return new MonReply(MonReplyStatus.Ok, 0, $"epoch {update.Epoch}", Data: update.Encode()).Encode();
            }
            if (kind == MonQuery.OsdMapAt)
            {
                return OsdMapAt(argument).Encode();
            }
            return Render(_state, kind, argument).Encode();
        }
        catch (WireFormatException e)
        {
            return new MonReply(MonReplyStatus.Invalid, 0, $"unreadable query: {e.Message}").Encode();
        }
    }

    /// <summary>Answers a query from the given maps, as text for people.</summary>
    public static MonReply Render(ClusterState s, MonQuery kind, string argument)
    {
        var b = new StringBuilder();
        switch (kind)
        {
            case MonQuery.Status:
                {
                    var h = ClusterHealth.Summarize(s);
                    b.AppendLine(CultureInfo.InvariantCulture, $"cluster {s.Fsid}");
                    b.AppendLine(CultureInfo.InvariantCulture, $"health  {h.Status.ToString().ToUpperInvariant()}");
                    foreach (var c in h.Checks)
                    {
                        b.AppendLine(CultureInfo.InvariantCulture, $"        {c.Severity.ToString().ToUpperInvariant()}: {c.Message}");
                    }
                    b.AppendLine(CultureInfo.InvariantCulture, $"mon     {h.Monitors} monitors: {string.Join(", ", s.Mon.Monitors.Select(m => $"{m.Name}@{m.Address}"))}");
                    var flags = (s.Osd.Flags & OsdMapFlags.NoOut) != 0 ? "; flags noout" : "";
                    b.AppendLine(CultureInfo.InvariantCulture, $"osd     epoch {h.OsdEpoch}: {h.Osds} OSDs, {h.OsdsUp} up, {h.OsdsIn} in{flags}");
                    b.AppendLine(CultureInfo.InvariantCulture, $"pools   {h.Pools} pools, {h.PgsTotal} PGs");
                    return Ok(b);
                }
            case MonQuery.PoolList:
                b.AppendLine(CultureInfo.InvariantCulture, $"{"id",-4} {"name",-20} {"type",-10} {"size",4} {"min",4} {"pg_num",6} {"rule",4} {"quota bytes",12} {"quota objects",13}");
                foreach (var p in s.Osd.Pools.Values)
                {
                    var type = p.Erasure is { } e ? $"ec {e.K}+{e.M}" : "replicated";
                    b.AppendLine(CultureInfo.InvariantCulture, $"{p.Id,-4} {p.Name,-20} {type,-10} {p.Size,4} {p.MinSize,4} {p.PgNum,6} {p.CrushRule,4} {p.QuotaMaxBytes,12} {p.QuotaMaxObjects,13}");
                }
                return Ok(b);
            case MonQuery.OsdTree:
                b.Append(OsdTree.Format(OsdTree.Build(s.Osd)));
                return Ok(b);
            case MonQuery.AuthList:
                foreach (var e in s.Auth.Entities.Values)
                {
                    b.AppendLine(e.Name);
                    if (e.ExpiresMs != 0)
                    {
                        b.AppendLine(CultureInfo.InvariantCulture,
                            $"        join token, expires {DateTimeOffset.FromUnixTimeMilliseconds(e.ExpiresMs):u}{(e.Caps.Count == 0 ? ", used" : "")}");
                    }
                    foreach (var (service, caps) in e.Caps)
                    {
                        b.AppendLine(CultureInfo.InvariantCulture, $"        caps {service} = \"{caps}\"");
                    }
                }
                return Ok(b);
            case MonQuery.AuthGet:
                {
                    if (s.Auth.Find(argument) is not { } e)
                    {
                        return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound, $"no entity {argument}; `appliance auth ls` lists them");
                    }
                    // The keyring stanza of one entity: the way an administrator hands a key to a client.
                    var keyring = new Appliance.Wire.Auth.Keyring();
                    keyring.Add(e.ToKeyringEntry());
                    b.Append(keyring.Format());
                    return Ok(b);
                }
            case MonQuery.ServiceTicket or MonQuery.ServiceKeys:
                {
                    // "WHO\nSERVICE": the daemon puts the authenticated asker first.
                    var cut = argument.IndexOf('\n', StringComparison.Ordinal);
                    if (cut <= 0)
                    {
                        return new MonReply(MonReplyStatus.Invalid, 0, "a ticket or key request without its asker");
                    }
                    var (who, service) = (argument[..cut], argument[(cut + 1)..]);
                    return kind == MonQuery.ServiceTicket
                        ? ServiceTickets.Grant(s, who, service, DateTimeOffset.UtcNow)
                        : ServiceTickets.GrantKeys(s, who, service);
                }
            case MonQuery.Audit:
                {
                    var count = int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 50;
                    foreach (var e in s.Audit.Entries.TakeLast(count))
                    {
                        b.AppendLine(e.ToString());
                    }
                    return Ok(b);
                }
            case MonQuery.ConfigGet:
                try
                {
                    b.AppendLine(s.Config.Get(argument));
                    return Ok(b);
                }
                catch (Exception e) when (e is ArgumentException or KeyNotFoundException)
                {
                    return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound, e.Message);
                }
            case MonQuery.ConfigDump:
                foreach (var (k, v) in s.Config.Values)
                {
                    b.AppendLine(CultureInfo.InvariantCulture, $"{k} = {v}");
                }
                return Ok(b);
            case MonQuery.BlocklistList:
                foreach (var (instance, expires) in s.Osd.Blocklist)
                {
                    b.AppendLine(CultureInfo.InvariantCulture, $"{instance} {DateTimeOffset.FromUnixTimeMilliseconds(expires):u}");
                }
                b.AppendLine(CultureInfo.InvariantCulture, $"listed {s.Osd.Blocklist.Count} entries");
                return Ok(b);
            case MonQuery.Epochs:
                b.AppendLine(CultureInfo.InvariantCulture, $"monmap {s.Mon.Epoch} osdmap {s.Osd.Epoch} audit {s.Audit.LastSeq} config {s.Config.MapVersion}");
                return Ok(b);
            default:
                return new MonReply(MonReplyStatus.Invalid, 0, $"unknown query {(byte)kind}");
        }
    }

    /// <summary>What a subscriber at osdmap epoch <paramref name="since"/> misses: nothing, the increments (from the
    /// history when it reaches back to since + 1), or the full map.</summary>
    public MapUpdate OsdMapSince(uint since)
    {
        var current = _state.Osd.Epoch;
        if (since >= current)
        {
            return new MapUpdate(MapUpdateKind.Unchanged, current, []);
        }
        if (since > 0 && _osdHistory.TryPeek(out var oldest) && oldest.Epoch <= since + 1)
        {
            var items = _osdHistory.Where(h => h.Epoch > since).Take(MapUpdate.MaxIncrements).Select(h => h.Bytes).ToList();
            return new MapUpdate(MapUpdateKind.Increments, current, items);
        }
        return new MapUpdate(MapUpdateKind.Full, current, [_state.Osd.ToBytes()]);
    }

    /// <summary>The whole osdmap of the epoch named, while this member keeps it.</summary>
    public MonReply OsdMapAt(string argument)
    {
        if (!uint.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var epoch) || epoch == 0)
        {
            return new MonReply(MonReplyStatus.Invalid, 0, $"an osdmap epoch is a number from 1, not '{argument}'");
        }
        var oldest = _osdMaps.Peek().Epoch;
        var current = _state.Osd.Epoch;
        if (epoch > current)
        {
            return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound, $"osdmap epoch {epoch} does not exist yet: the cluster is at epoch {current}");
        }
        if (epoch < oldest)
        {
            return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound,
                $"osdmap epoch {epoch} is no longer kept: the monitors keep epochs {oldest} to {current} (mon_min_osdmap_epochs = {_state.Config.GetInt("mon_min_osdmap_epochs")})");
        }
        var map = _osdMaps.ElementAt((int)(epoch - oldest));
        return new MonReply(MonReplyStatus.Ok, 0, $"osdmap epoch {epoch}", Data: map.ToBytes());
    }

    /// <summary>The monmap when it is newer than <paramref name="since"/>.</summary>
    public MapUpdate MonMapSince(uint since) =>
        since >= _state.Mon.Epoch
            ? new MapUpdate(MapUpdateKind.Unchanged, _state.Mon.Epoch, [])
            : new MapUpdate(MapUpdateKind.Full, _state.Mon.Epoch, [_state.Mon.ToBytes()]);

    private static MonReply Ok(StringBuilder b) => new(MonReplyStatus.Ok, 0, b.ToString());

    private const byte HistoryVersion = 1;

    /// <summary>The maps, then the OSD liveness (both are what the log's entries act on: every member must hold the
    /// same of each to reach the same results), then the osdmap history this member keeps (the oldest whole map kept
    /// and the increments since), so that past epochs survive a restart and a catch-up by snapshot.</summary>
    public byte[] Snapshot()
    {
        using var w = new WireWriter(4096);
        _state.Encode(w);
        _liveness.Encode(w);
        var m = w.BeginStruct(HistoryVersion, 1);
        _osdMaps.Peek().Encode(w);
        w.WriteU32((uint)_osdHistory.Count);
        foreach (var (epoch, bytes) in _osdHistory)
        {
            w.WriteU32(epoch);
            w.WriteBytes(bytes);
        }
        w.EndStruct(m);
        return w.ToArray();
    }

    public void Restore(ReadOnlySpan<byte> snapshot)
    {
        var r = new WireReader(snapshot);
        _state = ClusterState.Decode(ref r);
        // Snapshots written before liveness was part of them end here.
        _liveness = r.Remaining > 0 ? OsdLiveness.Decode(ref r) : OsdLiveness.Start(DateTimeOffset.UnixEpoch);
        _osdHistory.Clear();
        _osdMaps.Clear();
        if (r.Remaining > 0)
        {
            RestoreHistory(ref r);
        }
        else
        {
            // Snapshots written before the history was part of them: subscribers behind them get the full map.
            _osdMaps.Enqueue(_state.Osd);
        }
        r.ExpectEnd("monitor snapshot");
        Applied++;
    }

    /// <summary>Rebuilds the kept osdmaps: the oldest one whole, then each increment applied in turn; they must end
    /// at the snapshot's own osdmap (checked byte for byte), or the snapshot is refused as corrupt.</summary>
    private void RestoreHistory(ref WireReader r)
    {
        var s = r.BeginStruct(HistoryVersion, "osdmap history");
        var map = OsdMap.Decode(ref r);
        _osdMaps.Enqueue(map);
        var n = MapCodec.ReadCount(ref r, 8, "osdmap history increments");
        var previous = 0u;
        for (var i = 0; i < n; i++)
        {
            var epoch = r.ReadU32();
            var bytes = r.ReadBytes().ToArray();
            if (previous != 0 && epoch != previous + 1)
            {
                throw new WireFormatException($"osdmap history jumps from epoch {previous} to {epoch}");
            }
            previous = epoch;
            _osdHistory.Enqueue((epoch, bytes));
            if (epoch > map.Epoch)
            {
                var ir = new WireReader(bytes);
                map = map.Apply(OsdMapIncrement.Decode(ref ir));
                _osdMaps.Enqueue(map);
            }
        }
        r.EndStruct(s);
        if (map.Epoch != _state.Osd.Epoch || !map.ToBytes().AsSpan().SequenceEqual(_state.Osd.ToBytes()))
        {
            throw new WireFormatException($"the snapshot's osdmap history ends at epoch {map.Epoch}, not at its osdmap (epoch {_state.Osd.Epoch})");
        }
    }
}
