using System.Buffers.Binary;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;
using Xunit.Abstractions;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>Every map, increment and entry encodes and decodes back to the same bytes; newer encodings with extra
/// trailing fields decode; bad bytes fail with <see cref="WireFormatException"/> and nothing else.</summary>
public class CodecTests(ITestOutputHelper output)
{
    private delegate T Decoder<out T>(ref WireReader r);

    private static T RoundTrip<T>(byte[] bytes, Decoder<T> decode, Func<T, byte[]> encode)
    {
        var r = new WireReader(bytes);
        var value = decode(ref r);
        r.ExpectEnd(typeof(T).Name);
        Assert.Equal(bytes, encode(value));
        return value;
    }

    private static byte[] Enc(Action<WireWriter> encode)
    {
        using var w = new WireWriter();
        encode(w);
        return w.ToArray();
    }

    [Fact]
    public void Random_clusters_round_trip_every_map_and_increment()
    {
        var seed = TestSupport.Seed(output, nameof(Random_clusters_round_trip_every_map_and_increment));
        var rng = new Random(seed);
        int increments = 0, pools = 0, osds = 0;
        for (var iteration = 0; iteration < 25; iteration++)
        {
            var c = RandomCommands.Drive(rng.Next(), rng.Next(20, 200));
            var s = c.State;
            var state = RoundTrip(s.ToBytes(), ClusterState.Decode, x => x.ToBytes());
            Assert.Equal(s.Osd.CrushText, state.Osd.CrushText);
            Assert.Equal(s.Osd.Pools.Values, state.Osd.Pools.Values);
            Assert.Equal(s.Osd.Osds.Values, state.Osd.Osds.Values);
            Assert.Equal(s.Mon.Monitors, state.Mon.Monitors);
            Assert.Equal(s.Audit.Entries, state.Audit.Entries);
            Assert.Equal(s.Config.Values, state.Config.Values);
            Assert.Equal(s.Auth.Entities.Keys, state.Auth.Entities.Keys);
            Assert.All(s.Auth.Entities.Values, e => Assert.True(e.Key.Equals(state.Auth.Find(e.Name)!.Key)));
            RoundTrip(s.Mon.ToBytes(), MonMap.Decode, x => x.ToBytes());
            RoundTrip(s.Osd.ToBytes(), OsdMap.Decode, x => x.ToBytes());
            RoundTrip(s.Auth.ToBytes(), AuthDb.Decode, x => x.ToBytes());
            RoundTrip(s.Config.ToBytes(), ConfigDb.Decode, x => x.ToBytes());
            RoundTrip(s.Audit.ToBytes(), AuditLog.Decode, x => x.ToBytes());
            foreach (var inc in c.Increments)
            {
                RoundTrip(inc.ToBytes(), ClusterIncrement.Decode, x => x.ToBytes());
                if (inc.Osd is not null)
                {
                    RoundTrip(Enc(inc.Osd.Encode), OsdMapIncrement.Decode, x => Enc(x.Encode));
                }
            }
            increments += c.Increments.Count;
            pools += s.Osd.Pools.Count;
            osds += s.Osd.Osds.Count;
        }
        output.WriteLine($"{increments} increments, {pools} pools, {osds} osds round-tripped");
        Assert.True(increments > 100 && pools > 0 && osds > 0, "the generator produced too little to test");
    }

    /// <summary>Rewrites a versioned structure at <paramref name="offset"/> as a newer writer would: version + 1,
    /// <paramref name="extra"/> bytes of unknown fields appended inside it; outer lengths grow to match.</summary>
    private static byte[] AsNewerVersion(byte[] bytes, int offset, byte[] extra, params int[] outerStructOffsets)
    {
        var length = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset + 2));
        var end = offset + 6 + (int)length;
        var result = bytes[..end].Concat(extra).Concat(bytes[end..]).ToArray();
        result[offset]++;
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(offset + 2), length + (uint)extra.Length);
        foreach (var outer in outerStructOffsets)
        {
            var l = BinaryPrimitives.ReadUInt32LittleEndian(result.AsSpan(outer + 2));
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(outer + 2), l + (uint)extra.Length);
        }
        return result;
    }

    private static void DecodesNewer<T>(byte[] bytes, Decoder<T> decode, Func<T, byte[]> encode)
    {
        var newer = AsNewerVersion(bytes, 0, [1, 2, 3, 4, 5, 0xff, 0x10]);
        var r = new WireReader(newer);
        var value = decode(ref r);
        r.ExpectEnd(typeof(T).Name);
        Assert.Equal(bytes, encode(value)); // the known fields were read right, the unknown ones skipped
        // A writer that says only readers of its own (newer) version can read it is refused, clearly.
        var incompatible = (byte[])newer.Clone();
        incompatible[1] = newer[0];
        var e = Assert.Throws<WireFormatException>(() =>
        {
            var r2 = new WireReader(incompatible);
            decode(ref r2);
        });
        Assert.Contains($"needs a reader of version {newer[0]}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decoders_skip_fields_a_newer_version_appends()
    {
        var c = RandomCommands.Drive(17, 300);
        var s = c.State;
        DecodesNewer(s.ToBytes(), ClusterState.Decode, x => x.ToBytes());
        DecodesNewer(s.Mon.ToBytes(), MonMap.Decode, x => x.ToBytes());
        DecodesNewer(s.Osd.ToBytes(), OsdMap.Decode, x => x.ToBytes());
        DecodesNewer(s.Auth.ToBytes(), AuthDb.Decode, x => x.ToBytes());
        DecodesNewer(s.Config.ToBytes(), ConfigDb.Decode, x => x.ToBytes());
        DecodesNewer(s.Audit.ToBytes(), AuditLog.Decode, x => x.ToBytes());
        foreach (var inc in c.Increments.Take(40))
        {
            DecodesNewer(inc.ToBytes(), ClusterIncrement.Decode, x => x.ToBytes());
        }
        var mon = new MonInfo("a", "10.0.0.1:6789", 0, 4);
        DecodesNewer(Enc(mon.Encode), MonInfo.Decode, x => Enc(x.Encode));
        var osd = new OsdInfo(3, "10.0.0.3:6800", "h1", true, false, 0x18000, 7, 12345, true);
        DecodesNewer(Enc(osd.Encode), OsdInfo.Decode, x => Enc(x.Encode));
        var pool = new PoolInfo(2, "ec", PoolType.Erasure, 5, 4, 64, false, 1, new ErasureProfile(3, 2), 1 << 30, 99, 4);
        DecodesNewer(Enc(pool.Encode), PoolInfo.Decode, x => Enc(x.Encode));
        var entity = new AuthEntity("client.x", Cluster.Key(5), Cluster.Caps2(("mon", "allow r")));
        DecodesNewer(Enc(entity.Encode), AuthEntity.Decode, x => Enc(x.Encode));
        var audit = new AuditEntry(9, 1000, "client.admin", "pool rm vm", "ok");
        DecodesNewer(Enc(audit.Encode), AuditEntry.Decode, x => Enc(x.Encode));
        Assert.NotEmpty(c.Increments);
    }

    [Fact]
    public void A_newer_osd_entry_inside_a_map_is_read_and_the_rest_of_the_map_follows()
    {
        var c = new Cluster();
        c.Boot(0, "h0");
        c.Boot(1, "h1");
        c.Must(new PoolCreate("vm"));
        var bytes = c.State.Osd.ToBytes();
        // osdmap struct header (6) + epoch (4) + fsid (16) + modified (8) + osd count (4) = the first osd entry.
        const int firstOsd = 6 + 4 + 16 + 8 + 4;
        var newer = AsNewerVersion(bytes, firstOsd, [9, 9, 9], 0);
        var map = OsdMap.FromBytes(newer);
        Assert.Equal(bytes, map.ToBytes());
        Assert.Equal("vm", map.Pools.Values.Single().Name);
    }

    [Fact]
    public void Every_truncation_and_random_damage_fails_only_with_wire_format_errors()
    {
        var seed = TestSupport.Seed(output, nameof(Every_truncation_and_random_damage_fails_only_with_wire_format_errors));
        var rng = new Random(seed);
        var c = RandomCommands.Drive(seed, 150);
        var samples = new List<(string Name, byte[] Bytes, Action<byte[]> Decode)>
        {
            ("state", c.State.ToBytes(), b => ClusterState.FromBytes(b)),
            ("monmap", c.State.Mon.ToBytes(), b => MonMap.FromBytes(b)),
            ("auth", c.State.Auth.ToBytes(), b => AuthDb.FromBytes(b)),
            ("config", c.State.Config.ToBytes(), b => ConfigDb.FromBytes(b)),
            ("audit", c.State.Audit.ToBytes(), b => AuditLog.FromBytes(b)),
        };
        samples.AddRange(c.Increments.Take(30).Select(i => ("increment", i.ToBytes(), (Action<byte[]>)(b => ClusterIncrement.FromBytes(b)))));
        var failures = 0;
        foreach (var (name, bytes, decode) in samples)
        {
            // Truncations: every length for small encodings, a random sample of 200 for big ones.
            var cuts = bytes.Length <= 400 ? Enumerable.Range(0, bytes.Length) : Enumerable.Range(0, 200).Select(_ => rng.Next(bytes.Length));
            foreach (var cut in cuts)
            {
                Assert.Throws<WireFormatException>(() => decode(bytes[..cut]));
            }
            for (var i = 0; i < 100; i++)
            {
                var bad = (byte[])bytes.Clone();
                for (var k = rng.Next(1, 4); k > 0; k--)
                {
                    bad[rng.Next(bad.Length)] = (byte)rng.Next(256);
                }
                try
                {
                    decode(bad);
                }
                catch (WireFormatException)
                {
                    failures++;
                }
            }
        }
        output.WriteLine($"{failures} damaged encodings refused");
    }
}
