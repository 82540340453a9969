namespace Appliance.Fs.Meta.Tests;

/// <summary>Records round-trip; a newer version, a torn record or trailing bytes are refused, never misread.</summary>
public class EncodingTests
{
    [Fact]
    public void Inode_request_and_reply_round_trip()
    {
        var n = new Inode { Ino = 42, Mode = ModeBits.IfLnk | 0x1FF, Uid = 7, Gid = 8, Nlink = 1, Size = 1UL << 40, Rdev = 3, Atime = new(1, 2), Mtime = new(3, 999_999_999), Ctime = new(-5, 0), Parent = 9, Children = 11, Target = "tärget" };
        n.Xattrs["user.x"] = [1, 2, 3];
        var back = Inode.Decode(n.Encode());
        Assert.Equal(n.Encode(), back.Encode());
        Assert.Equal("tärget", back.Target);
        var req = new MetaRequest(MetaOp.Rename, new Caller(1, 2, [3, 4]), new(5, 6)) { Ino = 1, Name = "a", Ino2 = 2, Name2 = "b", Flags = 2, Data = [9], Valid = AttrMask.Mode | AttrMask.Size };
        var req2 = MetaRequest.Decode(req.Encode());
        Assert.Equal(req.Encode(), req2.Encode());
        Assert.Equal([3u, 4u], req2.Caller.Groups);
        var reply = new MetaReply(0) { Inode = n, Entries = [new("e", new Dentry(5, ModeBits.IfReg), null), new("f", new Dentry(6, ModeBits.IfDir), n)], More = true, Orphans = [1, 2], Inodes = 77 };
        Assert.Equal(reply.Encode(), MetaReply.Decode(reply.Encode()).Encode());
        // Without a parent a reply is written as version 1 (what mounts of the first format read); with one, 2.
        Assert.Equal(1, reply.Encode()[0]);
        var withParent = reply with { Parent = new Inode { Ino = 9, Mode = ModeBits.IfDir | 0x1ED, Nlink = 3 } };
        Assert.Equal(2, withParent.Encode()[0]);
        var parent = MetaReply.Decode(withParent.Encode()).Parent!;
        Assert.Equal((9UL, 3u), (parent.Ino, parent.Nlink));
        Assert.Null(MetaReply.Decode(reply.Encode()).Parent);
    }

    [Fact]
    public void Unknown_versions_torn_records_and_trailing_bytes_are_refused()
    {
        var raw = new Inode { Ino = 1 }.Encode();
        var newer = (byte[])raw.Clone();
        newer[0] = 2;
        Assert.Contains("version 2", Assert.Throws<MetaFormatException>(() => Inode.Decode(newer)).Message);
        Assert.Throws<MetaFormatException>(() => Inode.Decode(raw.AsSpan(0, raw.Length - 1)));
        Assert.Throws<MetaFormatException>(() => Inode.Decode([.. raw, 0]));
        Assert.Throws<MetaFormatException>(() => MetaRequest.Decode([1, 2, 3]));
        var rng = new Random(5);
        for (var i = 0; i < 2000; i++)
        {
            var junk = new byte[rng.Next(0, 80)];
            rng.NextBytes(junk);
            try
            {
                MetaRequest.Decode(junk);
            }
            catch (MetaFormatException)
            {
            }
        }
    }
}
