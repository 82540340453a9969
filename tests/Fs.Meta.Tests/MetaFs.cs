using System.Text;

namespace Appliance.Fs.Meta.Tests;

/// <summary>A formatted filesystem in memory with one-line calls for each operation (root by default).</summary>
public sealed class MetaFs
{
    public readonly MemoryMetaSource Store = new();
    public const ulong Root = Superblock.RootIno;

    public static async Task<MetaFs> NewAsync(uint rootMode = 0x1FF)
    {
        var fs = new MetaFs();
        var r = await fs.Store.RunAsync(new MetaRequest(MetaOp.Format, Caller.Root, fs.Store.Tick()) { Mode = rootMode });
        Assert.Equal(0, r.Errno);
        return fs;
    }

    public Task<MetaReply> Run(MetaOp op, Caller? c, Func<MetaRequest, MetaRequest> fill) =>
        Store.RunAsync(fill(new MetaRequest(op, c ?? Caller.Root, Store.Tick())));

    public Task<MetaReply> Make(ulong dir, string name, uint mode, Caller? c = null, string? target = null, uint flags = 0) =>
        Run(MetaOp.Make, c, r => r with { Ino = dir, Name = name, Mode = mode, Data = target is null ? [] : Encoding.UTF8.GetBytes(target), Flags = flags });

    public async Task<ulong> MkdirOk(ulong dir, string name, uint perms = 0x1ED, Caller? c = null) => Ok(await Make(dir, name, ModeBits.IfDir | perms, c)).Inode!.Ino;

    public async Task<ulong> CreateOk(ulong dir, string name, uint perms = 0x1A4, Caller? c = null) => Ok(await Make(dir, name, ModeBits.IfReg | perms, c)).Inode!.Ino;

    public Task<MetaReply> Lookup(ulong dir, string name, Caller? c = null) => Run(MetaOp.Lookup, c, r => r with { Ino = dir, Name = name });

    public Task<MetaReply> GetAttr(ulong ino) => Run(MetaOp.GetAttr, null, r => r with { Ino = ino });

    public Task<MetaReply> Unlink(ulong dir, string name, Caller? c = null) => Run(MetaOp.Unlink, c, r => r with { Ino = dir, Name = name });

    public Task<MetaReply> RmDir(ulong dir, string name, Caller? c = null) => Run(MetaOp.RmDir, c, r => r with { Ino = dir, Name = name });

    public Task<MetaReply> Link(ulong ino, ulong dir, string name, Caller? c = null) => Run(MetaOp.Link, c, r => r with { Ino = ino, Ino2 = dir, Name2 = name });

    public Task<MetaReply> Rename(ulong from, string name, ulong to, string newName, uint flags = 0, Caller? c = null) =>
        Run(MetaOp.Rename, c, r => r with { Ino = from, Name = name, Ino2 = to, Name2 = newName, Flags = flags });

    public Task<MetaReply> SetAttr(ulong ino, AttrMask valid, Caller? c = null, uint mode = 0, uint uid = 0, uint gid = 0, ulong size = 0) =>
        Run(MetaOp.SetAttr, c, r => r with { Ino = ino, Valid = valid, Mode = mode, Uid = uid, Gid = gid, Size = size });

    public async Task<Inode> Inode(ulong ino) => Ok(await GetAttr(ino)).Inode!;

    public static MetaReply Ok(MetaReply r)
    {
        Assert.True(r.IsOk, $"errno {r.Errno}");
        return r;
    }
}
