using System.Buffers.Binary;
using System.Globalization;
using Appliance.Monitor.Storage;
using Appliance.Paxos.Core;
using Appliance.Paxos.Encoding;
using Appliance.Paxos.Storage;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Daemon;

/// <summary>
/// The Paxos acceptor state in the monitor's own store: each <see cref="Write"/> is one atomic, durable store batch
/// (the promise, the snapshot, the trim, the entries and the commit index together), so a crash keeps all of it or
/// none. Keys: <c>paxos/promised</c>, <c>paxos/commit</c>, <c>paxos/snapshot</c>, and <c>log/&lt;index, 20 digits&gt;</c>.
/// </summary>
public sealed class MonitorPaxosStorage(MonitorStore store) : IPaxosStorage
{
    private const string Paxos = "paxos";
    private const string Log = "log";

    private static string IndexKey(long index) => index.ToString("D20", CultureInfo.InvariantCulture);

    public PaxosDurableState Load()
    {
        var state = new PaxosDurableState();
        if (store.Get(Paxos, "promised") is { } p)
        {
            state.Promised = new Ballot(BinaryPrimitives.ReadInt64LittleEndian(p), BinaryPrimitives.ReadInt32LittleEndian(p.AsSpan(8)));
        }
        if (store.Get(Paxos, "commit") is { } c)
        {
            state.CommitIndex = BinaryPrimitives.ReadInt64LittleEndian(c);
        }
        if (store.Get(Paxos, "snapshot") is { } s)
        {
            state.Snapshot = DecodeSnapshot(s);
        }
        foreach (var (key, value) in store.List(Log))
        {
            var entry = DecodeEntry(value);
            if (IndexKey(entry.Index) != key)
            {
                throw new MonitorStoreCorruptionException(store.Directory, 0, $"paxos log entry under key {key} says it is index {entry.Index}");
            }
            state.Entries[entry.Index] = entry;
        }
        return state;
    }

    public void Write(PaxosWriteBatch batch)
    {
        var b = new WriteBatch();
        if (batch.Promised is { } promised)
        {
            var bytes = new byte[12];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, promised.Round);
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), promised.Node);
            b.Put(Paxos, "promised", bytes);
        }
        if (batch.Snapshot is { } snapshot)
        {
            b.Put(Paxos, "snapshot", EncodeSnapshot(snapshot));
        }
        if (batch.TrimThrough is { } trim)
        {
            foreach (var (key, _) in store.List(Log))
            {
                if (string.CompareOrdinal(key, IndexKey(trim)) > 0)
                {
                    break;
                }
                b.Delete(Log, key);
            }
        }
        foreach (var e in batch.Entries)
        {
            b.Put(Log, IndexKey(e.Index), EncodeEntry(e));
        }
        if (batch.CommitIndex is { } commit)
        {
            var bytes = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, commit);
            b.Put(Paxos, "commit", bytes);
        }
        if (b.Count > 0)
        {
            store.Apply(b);
        }
    }

    private static byte[] EncodeEntry(AcceptedEntry e)
    {
        using var w = new WireWriter();
        w.WriteI64(e.Index);
        w.WriteI64(e.Ballot.Round);
        w.WriteI32(e.Ballot.Node);
        w.WriteBytes(PaxosCodec.EncodeValue(e.Value));
        return w.ToArray();
    }

    private static AcceptedEntry DecodeEntry(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var index = r.ReadI64();
        var ballot = new Ballot(r.ReadI64(), r.ReadI32());
        var value = PaxosCodec.DecodeValue(r.ReadBytes());
        return new AcceptedEntry(index, ballot, value);
    }

    private static byte[] EncodeSnapshot(SnapshotData s)
    {
        using var w = new WireWriter();
        w.WriteI64(s.Index);
        w.WriteU32((uint)s.Members.Count);
        foreach (var id in s.Members.Ids)
        {
            w.WriteI32(id);
        }
        w.WriteBytes(s.Data);
        return w.ToArray();
    }

    private static SnapshotData DecodeSnapshot(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var index = r.ReadI64();
        var n = r.ReadU32();
        if (n > 64)
        {
            throw new InvalidDataException($"the stored paxos snapshot names {n} members");
        }
        var ids = new int[n];
        for (var i = 0; i < n; i++)
        {
            ids[i] = r.ReadI32();
        }
        return new SnapshotData(index, new MemberSet(ids), r.ReadBytes().ToArray());
    }
}
