using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Maps.Protocol;

/// <summary>Messenger message types of the monitors.</summary>
public static class MonMessageTypes
{
    /// <summary>A Paxos message between monitors (payload: PaxosCodec bytes).</summary>
    public const ushort Paxos = 400;
    /// <summary>A client's request to any monitor (<see cref="MonRequest"/>).</summary>
    public const ushort Request = 410;
    /// <summary>The answer to a request (<see cref="MonReply"/>).</summary>
    public const ushort Reply = 411;
}

/// <summary>Read-only questions a client may ask. All but <see cref="MonStatus"/> are answered by the leader under
/// its lease (linearizable); <see cref="MonStatus"/> describes the answering monitor itself.</summary>
public enum MonQuery : byte
{
    Status = 1,
    PoolList = 2,
    OsdTree = 3,
    AuthList = 4,
    Audit = 5,
    ConfigGet = 6,
    ConfigDump = 7,
    MonStatus = 8,
    AuthGet = 9,
    Epochs = 10,
    /// <summary>A subscription poll: the osdmap changes after epoch <see cref="MonRequest.Since"/> (a
    /// <see cref="MapUpdate"/> in <see cref="MonReply.Data"/>); waits up to <see cref="MonRequest.WaitMs"/> for one.</summary>
    OsdMapSince = 11,
    /// <summary>A subscription poll for the monmap (always the full map: it is small).</summary>
    MonMapSince = 12,
    /// <summary>A ticket for the service named in the argument, for the asking entity, with its capabilities; the
    /// ticket's session key comes sealed under the entity's key (the bytes are <see cref="TicketGrants"/>').</summary>
    ServiceTicket = 13,
    /// <summary>The rotating keys of the service named in the argument, for that service's own daemons only
    /// (`osd.N` for `osd`), sealed under the daemon's key (<see cref="TicketGrants.OpenKeys"/>).</summary>
    ServiceKeys = 14,
    /// <summary>The whole osdmap of the epoch named in the argument, if the monitor still keeps it (the last
    /// mon_min_osdmap_epochs; an older one is answered Failed/NotFound).</summary>
    OsdMapAt = 15,
    /// <summary>An OSD's PG statistics (<see cref="PgStatsReport"/> in <see cref="MonRequest.Payload"/>), for the
    /// leader's memory only: not committed through Paxos. Only `osd.N` may report as N.</summary>
    PgStatsReport = 16,
    /// <summary>`pg ls [POOL]`: the latest statistics of every PG (of one pool), text and <see cref="PgStat"/>s in the
    /// data (<see cref="PgStat.DecodeDump"/>). Answered by the leader from what OSDs reported to it.</summary>
    PgDump = 17,
    /// <summary>`df`: use per pool and per OSD, text and a <see cref="DfReport"/> in the data.</summary>
    Df = 18,
    /// <summary>`osd blocklist ls`: the blocklisted client instances with their expiry.</summary>
    BlocklistList = 19,
}

/// <summary>
/// One request: a command to commit (with the client's id and sequence, so a retry after a monitor failure is applied
/// at most once) or a query with one text argument. Subscription polls (<see cref="MonQuery.OsdMapSince"/>,
/// <see cref="MonQuery.MonMapSince"/>) name the epoch the client has and how long the monitor may hold the request
/// waiting for a newer one (version 2 fields; a version 1 request means epoch 0, no wait). A query may carry binary
/// <see cref="Payload"/> (version 3; null when empty), e.g. <see cref="MonQuery.PgStatsReport"/>.
/// </summary>
public sealed record MonRequest(long ClientId, long Seq, MonCommand? Command, MonQuery Query = 0, string Argument = "", uint Since = 0, int WaitMs = 0,
    byte[]? Payload = null)
{
    private const byte Version = 3;
    /// <summary>Largest payload a request may carry.</summary>
    public const int MaxPayload = 8 << 20;
    /// <summary>The longest a monitor holds a subscription poll.</summary>
    public const int MaxWaitMs = 30_000;

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var mark = w.BeginStruct(Version, 1);
        w.WriteI64(ClientId);
        w.WriteI64(Seq);
        w.WriteBool(Command is not null);
        if (Command is not null)
        {
            MonCommandCodec.Encode(w, Command);
        }
        else
        {
            w.WriteU8((byte)Query);
            w.WriteString(Argument);
        }
        w.WriteU32(Since);
        w.WriteI32(WaitMs);
        w.WriteBytes(Payload ?? []);
        w.EndStruct(mark);
        return w.ToArray();
    }

    public static MonRequest Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var scope = r.BeginStruct(Version, "monitor request");
        var clientId = r.ReadI64();
        var seq = r.ReadI64();
        MonRequest request;
        if (r.ReadBool())
        {
            request = new MonRequest(clientId, seq, MonCommandCodec.Decode(ref r));
        }
        else
        {
            var query = (MonQuery)r.ReadU8();
            request = new MonRequest(clientId, seq, null, query, r.ReadString());
        }
        if (scope.Version >= 2)
        {
            var since = r.ReadU32();
            request = request with { Since = since, WaitMs = Math.Clamp(r.ReadI32(), 0, MaxWaitMs) };
        }
        if (scope.Version >= 3 && r.ReadBytes(MaxPayload) is { Length: > 0 } payload)
        {
            request = request with { Payload = payload.ToArray() };
        }
        r.EndStruct(scope);
        return request;
    }
}

/// <summary>How a request ended.</summary>
public enum MonReplyStatus : byte
{
    /// <summary>Done; <see cref="MonReply.Message"/> is the result.</summary>
    Ok = 0,
    /// <summary>The cluster refused the command (<see cref="MonReply.Code"/> is a <see cref="MonErrorCode"/>).</summary>
    Failed = 1,
    /// <summary>Ask the leader instead: <see cref="MonReply.Leader"/> names it when known.</summary>
    NotLeader = 2,
    /// <summary>This monitor is not in a quorum: nothing (stale or not) is answered. Try another.</summary>
    NoQuorum = 3,
    /// <summary>The caller's capabilities do not allow this.</summary>
    Denied = 4,
    /// <summary>The request itself is malformed.</summary>
    Invalid = 5,
    /// <summary>Not committed in time; it may still commit (retrying with the same id and sequence is safe).</summary>
    Timeout = 6,
}

/// <summary>An answer: status, error code, text for people, the leader's address (NotLeader), and binary data for
/// programs (a <see cref="MapUpdate"/> for subscription polls; version 2 field, empty when absent).</summary>
public sealed record MonReply(MonReplyStatus Status, int Code, string Message, string? Leader = null, byte[]? Data = null)
{
    private const byte Version = 2;

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var mark = w.BeginStruct(Version, 1);
        w.WriteU8((byte)Status);
        w.WriteI32(Code);
        w.WriteString(Message);
        w.WriteString(Leader ?? "");
        w.WriteBytes(Data ?? []);
        w.EndStruct(mark);
        return w.ToArray();
    }

    public static MonReply Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var scope = r.BeginStruct(Version, "monitor reply");
        var status = (MonReplyStatus)r.ReadU8();
        var code = r.ReadI32();
        var message = r.ReadString(16 << 20);
        var leader = r.ReadString();
        var data = scope.Version >= 2 ? r.ReadBytes().ToArray() : [];
        r.EndStruct(scope);
        return new MonReply(status, code, message, leader.Length == 0 ? null : leader, data.Length == 0 ? null : data);
    }
}

/// <summary>What a subscription poll brings.</summary>
public enum MapUpdateKind : byte
{
    /// <summary>Nothing newer than the client's epoch (the wait ran out).</summary>
    Unchanged = 0,
    /// <summary>The increments for each epoch after the client's, in order.</summary>
    Increments = 1,
    /// <summary>The whole current map (the client's epoch is too old for the increments this monitor keeps, or 0).</summary>
    Full = 2,
}

/// <summary>
/// The answer to a subscription poll: <see cref="Epoch"/> is the newest epoch the monitor has; <see cref="Items"/>
/// are encoded increments (epochs since+1 .. since+n, possibly fewer than up to <see cref="Epoch"/>: the client asks
/// again) or one encoded full map.
/// </summary>
public sealed record MapUpdate(MapUpdateKind Kind, uint Epoch, IReadOnlyList<byte[]> Items)
{
    private const byte Version = 1;
    /// <summary>Most increments in one answer.</summary>
    public const int MaxIncrements = 256;

    public byte[] Encode()
    {
        using var w = new WireWriter();
        var mark = w.BeginStruct(Version, 1);
        w.WriteU8((byte)Kind);
        w.WriteU32(Epoch);
        w.WriteU32((uint)Items.Count);
        foreach (var item in Items)
        {
            w.WriteBytes(item);
        }
        w.EndStruct(mark);
        return w.ToArray();
    }

    public static MapUpdate Decode(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var scope = r.BeginStruct(Version, "map update");
        var kind = (MapUpdateKind)r.ReadU8();
        if (kind > MapUpdateKind.Full)
        {
            throw new WireFormatException($"unknown map update kind {(byte)kind}");
        }
        var epoch = r.ReadU32();
        var count = r.ReadU32();
        if (count > (uint)r.Remaining / 4)
        {
            throw new WireFormatException($"{count} map items cannot fit in {r.Remaining} bytes");
        }
        var items = new List<byte[]>((int)count);
        for (var i = 0; i < count; i++)
        {
            items.Add(r.ReadBytes().ToArray());
        }
        r.EndStruct(scope);
        return new MapUpdate(kind, epoch, items);
    }
}

/// <summary>The byte encoding of <see cref="MonCommand"/>s: a tag per command type, then its fields.</summary>
public static class MonCommandCodec
{
    public static void Encode(WireWriter w, MonCommand command)
    {
        switch (command)
        {
            case PoolCreate c:
                w.WriteU8(1);
                w.WriteString(c.Name);
                w.WriteU8((byte)c.Type);
                WriteOptional(w, c.Size);
                WriteOptional(w, c.MinSize);
                WriteOptional(w, c.PgNum);
                w.WriteString(c.Rule ?? "");
                WriteOptional(w, c.K);
                WriteOptional(w, c.M);
                w.WriteU64(c.QuotaMaxBytes);
                w.WriteU64(c.QuotaMaxObjects);
                break;
            case PoolRemove c:
                w.WriteU8(2);
                w.WriteString(c.Name);
                break;
            case PoolSet c:
                w.WriteU8(3);
                w.WriteString(c.Name);
                w.WriteString(c.Field);
                w.WriteString(c.Value);
                break;
            case OsdOut c:
                w.WriteU8(4);
                WriteIds(w, c.Ids);
                break;
            case OsdIn c:
                w.WriteU8(5);
                WriteIds(w, c.Ids);
                break;
            case OsdSetFlag c:
                w.WriteU8(28);
                w.WriteString(c.Flag);
                w.WriteBool(c.Set);
                break;
            case OsdRemove c:
                w.WriteU8(29);
                WriteIds(w, c.Ids);
                break;
            case AuthAdd c:
                w.WriteU8(6);
                w.WriteString(c.Entity);
                WriteCaps(w, c.Caps);
                w.WriteString(c.Key.ToBase64());
                break;
            case AuthCaps c:
                w.WriteU8(7);
                w.WriteString(c.Entity);
                WriteCaps(w, c.Caps);
                break;
            case AuthRemove c:
                w.WriteU8(8);
                w.WriteString(c.Entity);
                break;
            case ConfigSet c:
                w.WriteU8(9);
                w.WriteString(c.Name);
                w.WriteString(c.Value);
                break;
            case ConfigRemove c:
                w.WriteU8(10);
                w.WriteString(c.Name);
                break;
            case MonAdd c:
                w.WriteU8(11);
                w.WriteString(c.Name);
                w.WriteString(c.Address);
                break;
            case MonRemove c:
                w.WriteU8(12);
                w.WriteString(c.Name);
                break;
            case OsdBoot c:
                // Tag 13 is the boot older monitors read; 19 adds the cluster address and the uuid.
                var extended = c.ClusterAddress is not null || c.Uuid != Guid.Empty;
                w.WriteU8(extended ? (byte)19 : (byte)13);
                w.WriteI32(c.Id);
                w.WriteString(c.Address);
                w.WriteString(c.Host);
                w.WriteU32(c.Weight);
                if (extended)
                {
                    w.WriteString(c.ClusterAddress ?? "");
                    MapCodec.WriteGuid(w, c.Uuid);
                }
                break;
            case OsdBeacon c:
                w.WriteU8(14);
                w.WriteI32(c.Id);
                break;
            case OsdFailureReport c:
                w.WriteU8(c.Immediate ? (byte)20 : (byte)15);
                w.WriteI32(c.Target);
                w.WriteI32(c.Reporter);
                break;
            case OsdFailureCancel c:
                w.WriteU8(16);
                w.WriteI32(c.Target);
                w.WriteI32(c.Reporter);
                break;
            case OsdTick:
                w.WriteU8(17);
                break;
            case ServiceKeyRotate c:
                w.WriteU8(18);
                w.WriteString(c.Service);
                w.WriteString(c.Key.ToBase64());
                break;
            case OsdAlive c:
                w.WriteU8(21);
                w.WriteI32(c.Id);
                w.WriteU32(c.WantUpThru);
                break;
            case PgTemp c:
                w.WriteU8(22);
                w.WriteI32(c.From);
                w.WriteU32((uint)c.Changes.Count);
                foreach (var change in c.Changes)
                {
                    change.Pg.Encode(w);
                    WriteIds(w, change.Acting);
                    w.WriteI32(change.Primary);
                }
                break;
            case OsdBlocklistAdd c:
                w.WriteU8(23);
                w.WriteString(c.Instance);
                w.WriteI64(c.ExpireSeconds);
                break;
            case OsdBlocklistRemove c:
                w.WriteU8(24);
                w.WriteString(c.Instance);
                break;
            case OsdCreate c:
                w.WriteU8(25);
                MapCodec.WriteGuid(w, c.Uuid);
                w.WriteString(c.Key.ToBase64());
                WriteOptional(w, c.Id);
                break;
            case PoolQuotaFlags c:
                w.WriteU8(26);
                w.WriteU32((uint)c.Full.Count);
                foreach (var (pool, full) in c.Full.OrderBy(kv => kv.Key))
                {
                    w.WriteI32(pool);
                    w.WriteBool(full);
                }
                break;
            case OsdFullFlags c:
                w.WriteU8(27);
                w.WriteU32((uint)c.Fullness.Count);
                foreach (var (osd, fullness) in c.Fullness.OrderBy(kv => kv.Key))
                {
                    w.WriteI32(osd);
                    w.WriteU8((byte)fullness);
                }
                break;
            // Tags 28 and 29 are taken by branch peer (osd set/unset, osd rm); join tokens start at 40.
            case JoinTokenCreate c:
                w.WriteU8(40);
                w.WriteString(c.Node);
                w.WriteString(c.Key.ToBase64());
                w.WriteI64(c.TtlSeconds);
                break;
            case JoinConsume c:
                w.WriteU8(41);
                w.WriteString(c.Node);
                w.WriteString(c.NodeKey.ToBase64());
                break;
            default:
                throw new ArgumentException($"no encoding for command {command.GetType().Name}", nameof(command));
        }
    }

    public static MonCommand Decode(ref WireReader r)
    {
        var tag = r.ReadU8();
        return tag switch
        {
            1 => new PoolCreate(r.ReadString(), (PoolType)r.ReadU8(), ReadOptional(ref r), ReadOptional(ref r), ReadOptional(ref r),
                NullIfEmpty(r.ReadString()), ReadOptional(ref r), ReadOptional(ref r), r.ReadU64(), r.ReadU64()),
            2 => new PoolRemove(r.ReadString()),
            3 => new PoolSet(r.ReadString(), r.ReadString(), r.ReadString()),
            4 => new OsdOut(ReadIds(ref r)),
            5 => new OsdIn(ReadIds(ref r)),
            6 => new AuthAdd(r.ReadString(), ReadCaps(ref r), ReadSecret(ref r)),
            7 => new AuthCaps(r.ReadString(), ReadCaps(ref r)),
            8 => new AuthRemove(r.ReadString()),
            9 => new ConfigSet(r.ReadString(), r.ReadString()),
            10 => new ConfigRemove(r.ReadString()),
            11 => new MonAdd(r.ReadString(), r.ReadString()),
            12 => new MonRemove(r.ReadString()),
            13 => new OsdBoot(r.ReadI32(), r.ReadString(), r.ReadString(), r.ReadU32()),
            14 => new OsdBeacon(r.ReadI32()),
            15 => new OsdFailureReport(r.ReadI32(), r.ReadI32()),
            16 => new OsdFailureCancel(r.ReadI32(), r.ReadI32()),
            17 => new OsdTick(),
            18 => new ServiceKeyRotate(r.ReadString(), ReadSecret(ref r)),
            19 => new OsdBoot(r.ReadI32(), r.ReadString(), r.ReadString(), r.ReadU32(), NullIfEmpty(r.ReadString()), MapCodec.ReadGuid(ref r)),
            20 => new OsdFailureReport(r.ReadI32(), r.ReadI32(), Immediate: true),
            21 => new OsdAlive(r.ReadI32(), r.ReadU32()),
            22 => new PgTemp(r.ReadI32(), ReadPgTempChanges(ref r)),
            23 => new OsdBlocklistAdd(r.ReadString(), r.ReadI64()),
            24 => new OsdBlocklistRemove(r.ReadString()),
            25 => new OsdCreate(MapCodec.ReadGuid(ref r), ReadSecret(ref r), ReadOptional(ref r)),
            26 => new PoolQuotaFlags(ReadPoolFlags(ref r)),
            27 => new OsdFullFlags(ReadOsdFullness(ref r)),
            28 => new OsdSetFlag(r.ReadString(), r.ReadBool()),
            29 => new OsdRemove(ReadIds(ref r)),
            40 => new JoinTokenCreate(r.ReadString(), ReadSecret(ref r), r.ReadI64()),
            41 => new JoinConsume(r.ReadString(), ReadSecret(ref r)),
            _ => throw new WireFormatException($"unknown monitor command tag {tag}"),
        };
    }

    private static Secret ReadSecret(ref WireReader r)
    {
        try
        {
            return Secret.FromBase64(r.ReadString());
        }
        catch (FormatException)
        {
            throw new WireFormatException("a command carries a malformed key");
        }
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;

    private static List<PgTempChange> ReadPgTempChanges(ref WireReader r)
    {
        var n = MapCodec.ReadCount(ref r, 16, "pg_temp changes");
        var list = new List<PgTempChange>(n);
        for (var i = 0; i < n; i++)
        {
            list.Add(new PgTempChange(PgId.Decode(ref r), ReadIds(ref r), r.ReadI32()));
        }
        return list;
    }

    private static Dictionary<int, bool> ReadPoolFlags(ref WireReader r)
    {
        var n = MapCodec.ReadCount(ref r, 5, "pool quota flags");
        var flags = new Dictionary<int, bool>(n);
        for (var i = 0; i < n; i++)
        {
            flags[r.ReadI32()] = r.ReadBool();
        }
        return flags;
    }

    private static Dictionary<int, OsdFullness> ReadOsdFullness(ref WireReader r)
    {
        var n = MapCodec.ReadCount(ref r, 5, "osd full flags");
        var flags = new Dictionary<int, OsdFullness>(n);
        for (var i = 0; i < n; i++)
        {
            var osd = r.ReadI32();
            flags[osd] = OsdInfo.ReadFullness(ref r, osd);
        }
        return flags;
    }

    private static void WriteOptional(WireWriter w, int? v)
    {
        w.WriteBool(v.HasValue);
        w.WriteI32(v ?? 0);
    }

    private static int? ReadOptional(ref WireReader r)
    {
        var has = r.ReadBool();
        var v = r.ReadI32();
        return has ? v : null;
    }

    private static void WriteIds(WireWriter w, IReadOnlyList<int> ids)
    {
        w.WriteU32((uint)ids.Count);
        foreach (var id in ids)
        {
            w.WriteI32(id);
        }
    }

    private static int[] ReadIds(ref WireReader r)
    {
        var n = r.ReadU32();
        if (n > (uint)r.Remaining / 4)
        {
            throw new WireFormatException($"{n} OSD ids cannot fit in {r.Remaining} bytes");
        }
        var ids = new int[n];
        for (var i = 0; i < n; i++)
        {
            ids[i] = r.ReadI32();
        }
        return ids;
    }

    private static void WriteCaps(WireWriter w, IReadOnlyDictionary<string, string> caps)
    {
        w.WriteU32((uint)caps.Count);
        foreach (var (k, v) in caps.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            w.WriteString(k);
            w.WriteString(v);
        }
    }

    private static Dictionary<string, string> ReadCaps(ref WireReader r)
    {
        var n = r.ReadU32();
        if (n > 64)
        {
            throw new WireFormatException($"{n} capability services is more than any entity has");
        }
        var caps = new Dictionary<string, string>();
        for (var i = 0; i < n; i++)
        {
            caps[r.ReadString()] = r.ReadString();
        }
        return caps;
    }
}
