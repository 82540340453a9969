using Appliance.Wire.Codec;

namespace Appliance.Wire.Tests.Codec;

public sealed class CodecTests
{
    [Fact]
    public void Primitives_round_trip()
    {
        using var w = new WireWriter(4);
        w.WriteU8(7);
        w.WriteBool(true);
        w.WriteU16(0xBEEF);
        w.WriteU32(0xDEADBEEF);
        w.WriteI64(-5);
        w.WriteString("osd.3 ünïcode");
        w.WriteBytes([1, 2, 3]);
        var r = new WireReader(w.WrittenSpan);
        Assert.Equal(7, r.ReadU8());
        Assert.True(r.ReadBool());
        Assert.Equal(0xBEEF, r.ReadU16());
        Assert.Equal(0xDEADBEEF, r.ReadU32());
        Assert.Equal(-5, r.ReadI64());
        Assert.Equal("osd.3 ünïcode", r.ReadString());
        Assert.Equal([1, 2, 3], r.ReadBytes().ToArray());
        r.ExpectEnd("test");
    }

    [Fact]
    public void A_newer_writer_s_extra_fields_are_skipped_by_an_older_reader()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(version: 3, compat: 1);
        w.WriteU32(42);          // known to version 1
        w.WriteString("added in v3");
        w.EndStruct(m);
        w.WriteU32(99);          // the next field after the struct

        var r = new WireReader(w.WrittenSpan);
        var s = r.BeginStruct(ourVersion: 1, "thing");
        Assert.Equal(3, s.Version);
        Assert.Equal(42u, r.ReadU32());
        r.EndStruct(s);
        Assert.Equal(99u, r.ReadU32());
    }

    [Fact]
    public void An_encoding_that_needs_a_newer_reader_is_refused_clearly()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(version: 5, compat: 4);
        w.EndStruct(m);
        var e = Assert.Throws<WireFormatException>(() =>
        {
            var r = new WireReader(w.WrittenSpan);
            r.BeginStruct(ourVersion: 3, "osdmap");
        });
        Assert.Contains("osdmap version 5 needs a reader of version 4", e.Message);
    }

    [Fact]
    public void A_struct_cannot_read_past_its_own_end()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(1, 1);
        w.WriteU8(1);
        w.EndStruct(m);
        w.WriteU64(0);
        Assert.Throws<WireFormatException>(() =>
        {
            var r = new WireReader(w.WrittenSpan);
            r.BeginStruct(1, "x");
            r.ReadU32(); // only one byte belongs to the struct
        });
    }

    [Fact]
    public void Random_bytes_only_ever_fail_with_WireFormatException()
    {
        var random = new Random(Seeds.Get());
        for (var i = 0; i < 20000; i++)
        {
            var bytes = new byte[random.Next(0, 40)];
            random.NextBytes(bytes);
            try
            {
                var r = new WireReader(bytes);
                var s = r.BeginStruct(2, "fuzz");
                r.ReadString(64);
                r.ReadBytes(64);
                r.ReadU64();
                r.EndStruct(s);
            }
            catch (WireFormatException)
            {
            }
        }
    }
}
