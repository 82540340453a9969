using System.Buffers.Binary;
using Appliance.Paxos.Core;

namespace Appliance.Paxos.Tests.Simulation;

/// <summary>The state machine the simulation replicates: a map from small integer keys to long values (0 = absent),
/// with put and compare-and-set. Commands and queries are fixed-size little-endian records.</summary>
public sealed class KvMachine : IStateMachine
{
    private const byte OpPut = 1;
    private const byte OpCas = 2;

    private readonly SortedDictionary<int, long> _map = [];

    public IReadOnlyDictionary<int, long> Map => _map;

    public static byte[] Put(int key, long value)
    {
        var b = new byte[13];
        b[0] = OpPut;
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(1), key);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(5), value);
        return b;
    }

    public static byte[] Cas(int key, long expected, long value)
    {
        var b = new byte[21];
        b[0] = OpCas;
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(1), key);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(5), expected);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(13), value);
        return b;
    }

    public static byte[] Get(int key)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, key);
        return b;
    }

    public static long DecodeValue(byte[] result) => BinaryPrimitives.ReadInt64LittleEndian(result);

    public byte[] Apply(long index, ReadOnlySpan<byte> command)
    {
        var key = BinaryPrimitives.ReadInt32LittleEndian(command[1..]);
        switch (command[0])
        {
            case OpPut:
                _map[key] = BinaryPrimitives.ReadInt64LittleEndian(command[5..]);
                return [1];
            case OpCas:
                var expected = BinaryPrimitives.ReadInt64LittleEndian(command[5..]);
                var current = _map.GetValueOrDefault(key);
                if (current != expected)
                {
                    return [0];
                }
                _map[key] = BinaryPrimitives.ReadInt64LittleEndian(command[13..]);
                return [1];
            default:
                throw new InvalidOperationException($"unknown kv op {command[0]}");
        }
    }

    public byte[] Query(ReadOnlySpan<byte> query)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, _map.GetValueOrDefault(BinaryPrimitives.ReadInt32LittleEndian(query)));
        return b;
    }

    public byte[] Snapshot()
    {
        var b = new byte[4 + 12 * _map.Count];
        BinaryPrimitives.WriteInt32LittleEndian(b, _map.Count);
        var o = 4;
        foreach (var (k, v) in _map)
        {
            BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(o), k);
            BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(o + 4), v);
            o += 12;
        }
        return b;
    }

    public void Restore(ReadOnlySpan<byte> snapshot)
    {
        _map.Clear();
        var n = BinaryPrimitives.ReadInt32LittleEndian(snapshot);
        for (var i = 0; i < n; i++)
        {
            var o = 4 + 12 * i;
            _map[BinaryPrimitives.ReadInt32LittleEndian(snapshot[o..])] = BinaryPrimitives.ReadInt64LittleEndian(snapshot[(o + 4)..]);
        }
    }

    public string Describe() => string.Join(",", _map.Select(kv => $"{kv.Key}={kv.Value}"));
}
