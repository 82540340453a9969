using Appliance.Fs.Api;

namespace Appliance.Fs.TestFs;

/// <summary>Name operations: lookup, create, link, unlink, rename.</summary>
public sealed partial class MemoryFileSystem
{
    public ValueTask<FsResult<Entry>> LookupAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct) =>
        Gate is null ? new(Lookup(parent, name)) : GatedAsync("lookup", name, ct, () => Lookup(parent, name));

    public void Forget(ulong nodeId, ulong nlookup)
    {
        lock (_lock)
        {
            if (_nodes.TryGetValue(nodeId, out var n))
            {
                n.Lookups = n.Lookups > nlookup ? n.Lookups - nlookup : 0;
                MaybeFree(n);
            }
        }
    }

    public ValueTask<FsResult<Entry>> MkNodAsync(FuseContext ctx, ulong parent, string name, uint mode, uint rdev, CancellationToken ct)
    {
        var type = mode & SIfMt;
        if (type is not (SIfReg or 0x1000 or 0x2000 or 0x6000 or 0xC000))
        {
            return new(Err(FsErrno.EINVAL));
        }
        return new(Create(ctx, parent, name, mode, n => n.Rdev = rdev));
    }

    public ValueTask<FsResult<Entry>> MkDirAsync(FuseContext ctx, ulong parent, string name, uint mode, CancellationToken ct) =>
        Gate is null ? new(MkDir(ctx, parent, name, mode)) : GatedAsync("mkdir", name, ct, () => MkDir(ctx, parent, name, mode));

    public ValueTask<FsResult<Entry>> SymlinkAsync(FuseContext ctx, ulong parent, string name, string target, CancellationToken ct) =>
        new(Create(ctx, parent, name, SIfLnk | 0x1FF, n => n.Target = target));

    public ValueTask<FsResult<CreateReply>> CreateAsync(FuseContext ctx, ulong parent, string name, uint mode, int flags, CancellationToken ct)
    {
        lock (_lock)
        {
            var created = Create(ctx, parent, name, SIfReg | (mode & 0xFFF), null);
            if (!created.IsOk)
            {
                return new(Err(created.Errno));
            }
            var node = _nodes[created.Value.NodeId];
            return new(new CreateReply(created.Value, new OpenReply(OpenHandle(node))));
        }
    }

    public ValueTask<FsResult<Entry>> LinkAsync(FuseContext ctx, ulong nodeId, ulong newParent, string newName, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!_nodes.TryGetValue(nodeId, out var node))
            {
                return new(Err(FsErrno.ENOENT));
            }
            if (!TryDir(newParent, out var dir, out var error))
            {
                return new(error);
            }
            if (node.IsDir)
            {
                return new(Err(FsErrno.EPERM));
            }
            if (NameTooLong(newName))
            {
                return new(Err(FsErrno.ENAMETOOLONG));
            }
            if (dir.Dir!.ByName.ContainsKey(newName))
            {
                return new(Err(FsErrno.EEXIST));
            }
            dir.Dir.Add(newName, node.Ino);
            node.Nlink++;
            Touch(node, content: false);
            Touch(dir, content: true);
            return new(EntryOf(node));
        }
    }

    public ValueTask<FsError> UnlinkAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!TryDir(parent, out var dir, out var error))
            {
                return new(error);
            }
            if (!dir.Dir!.ByName.TryGetValue(name, out var e))
            {
                return new(Err(FsErrno.ENOENT));
            }
            var node = _nodes[e.Ino];
            if (node.IsDir)
            {
                return new(Err(FsErrno.EISDIR));
            }
            dir.Dir.Remove(name);
            node.Nlink--;
            Touch(node, content: false);
            Touch(dir, content: true);
            MaybeFree(node);
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsError> RmDirAsync(FuseContext ctx, ulong parent, string name, CancellationToken ct)
    {
        lock (_lock)
        {
            if (!TryDir(parent, out var dir, out var error))
            {
                return new(error);
            }
            if (name == ".")
            {
                return new(Err(FsErrno.EINVAL));
            }
            if (name == "..")
            {
                return new(Err(FsErrno.ENOTEMPTY));
            }
            if (!dir.Dir!.ByName.TryGetValue(name, out var e))
            {
                return new(Err(FsErrno.ENOENT));
            }
            var node = _nodes[e.Ino];
            if (!node.IsDir)
            {
                return new(Err(FsErrno.ENOTDIR));
            }
            if (node.Dir!.ByName.Count != 0)
            {
                return new(Err(FsErrno.ENOTEMPTY));
            }
            dir.Dir.Remove(name);
            dir.Nlink--;
            node.Nlink = 0;
            Touch(node, content: false);
            Touch(dir, content: true);
            MaybeFree(node);
            return new(FsError.Ok);
        }
    }

    public ValueTask<FsError> RenameAsync(FuseContext ctx, ulong parent, string name, ulong newParent, string newName, RenameFlags flags, CancellationToken ct)
    {
        lock (_lock)
        {
            return new(Rename(parent, name, newParent, newName, flags));
        }
    }

    private FsResult<Entry> Lookup(ulong parent, string name)
    {
        lock (_lock)
        {
            if (!TryDir(parent, out var dir, out var error))
            {
                return error;
            }
            if (NameTooLong(name))
            {
                return Err(FsErrno.ENAMETOOLONG);
            }
            var ino = name switch
            {
                "." => dir.Ino,
                ".." => dir.Dir!.Parent,
                _ => dir.Dir!.ByName.TryGetValue(name, out var e) ? e.Ino : 0,
            };
            return ino != 0 && _nodes.TryGetValue(ino, out var node) ? EntryOf(node) : Err(FsErrno.ENOENT);
        }
    }

    private FsResult<Entry> MkDir(FuseContext ctx, ulong parent, string name, uint mode)
    {
        lock (_lock)
        {
            var created = Create(ctx, parent, name, SIfDir | (mode & 0xFFF), n =>
            {
                n.Dir = new DirEntries(parent);
                n.Nlink = 2;
            });
            if (created.IsOk)
            {
                _nodes[parent].Nlink++;
            }
            return created;
        }
    }

    private FsResult<Entry> Create(FuseContext ctx, ulong parent, string name, uint mode, Action<Node>? init)
    {
        lock (_lock)
        {
            if (!TryDir(parent, out var dir, out var error))
            {
                return error;
            }
            if (dir.Nlink == 0)
            {
                return Err(FsErrno.ENOENT); // removed directory, still open
            }
            if (NameTooLong(name))
            {
                return Err(FsErrno.ENAMETOOLONG);
            }
            if (dir.Dir!.ByName.ContainsKey(name))
            {
                return Err(FsErrno.EEXIST);
            }
            var node = NewNode(ctx, dir, mode);
            if ((mode & SIfMt) == SIfReg)
            {
                node.Chunks = [];
            }
            init?.Invoke(node);
            dir.Dir.Add(name, node.Ino);
            Touch(dir, content: true);
            return EntryOf(node);
        }
    }

    private FsError Rename(ulong parent, string name, ulong newParent, string newName, RenameFlags flags)
    {
        if ((flags & ~(RenameFlags.NoReplace | RenameFlags.Exchange)) != 0 || flags == (RenameFlags.NoReplace | RenameFlags.Exchange))
        {
            return Err(FsErrno.EINVAL);
        }
        if (!TryDir(parent, out var from, out var error) || !TryDir(newParent, out var to, out error))
        {
            return error;
        }
        if (NameTooLong(newName))
        {
            return Err(FsErrno.ENAMETOOLONG);
        }
        if (!from.Dir!.ByName.TryGetValue(name, out var source))
        {
            return Err(FsErrno.ENOENT);
        }
        var node = _nodes[source.Ino];
        var exists = to.Dir!.ByName.TryGetValue(newName, out var target);
        if ((flags & RenameFlags.Exchange) != 0)
        {
            if (!exists)
            {
                return Err(FsErrno.ENOENT);
            }
            var other = _nodes[target.Ino];
            if (IsAncestor(node, to) || IsAncestor(other, from))
            {
                return Err(FsErrno.EINVAL);
            }
            from.Dir.Remove(name);
            to.Dir.Remove(newName);
            from.Dir.Add(name, other.Ino);
            to.Dir.Add(newName, node.Ino);
            if (from != to && node.IsDir != other.IsDir)
            {
                // One directory moved each way: the parent that got it gains its "..".
                var (gains, loses) = node.IsDir ? (to, from) : (from, to);
                gains.Nlink++;
                loses.Nlink--;
            }
            Reparent(node, to.Ino);
            Reparent(other, from.Ino);
            Touch(node, content: false);
            Touch(other, content: false);
            Touch(from, content: true);
            Touch(to, content: true);
            return FsError.Ok;
        }
        if (exists && (flags & RenameFlags.NoReplace) != 0)
        {
            return Err(FsErrno.EEXIST);
        }
        if (node.IsDir && IsAncestor(node, to))
        {
            return Err(FsErrno.EINVAL);
        }
        if (exists)
        {
            if (target.Ino == source.Ino)
            {
                return FsError.Ok; // two names of one inode: POSIX says do nothing
            }
            var victim = _nodes[target.Ino];
            if (node.IsDir && !victim.IsDir)
            {
                return Err(FsErrno.ENOTDIR);
            }
            if (!node.IsDir && victim.IsDir)
            {
                return Err(FsErrno.EISDIR);
            }
            if (victim.IsDir && victim.Dir!.ByName.Count != 0)
            {
                return Err(FsErrno.ENOTEMPTY);
            }
            to.Dir.Remove(newName);
            if (victim.IsDir)
            {
                victim.Nlink = 0;
                to.Nlink--;
            }
            else
            {
                victim.Nlink--;
            }
            Touch(victim, content: false);
            MaybeFree(victim);
        }
        from.Dir.Remove(name);
        to.Dir.Add(newName, node.Ino);
        if (node.IsDir && from != to)
        {
            from.Nlink--;
            to.Nlink++;
        }
        Reparent(node, to.Ino);
        Touch(node, content: false);
        Touch(from, content: true);
        Touch(to, content: true);
        return FsError.Ok;
    }

    private static void Reparent(Node node, ulong parent)
    {
        if (node.Dir is not null)
        {
            node.Dir.Parent = parent;
        }
    }

    /// <summary>True when <paramref name="dir"/> is <paramref name="node"/> or lies below it.</summary>
    private bool IsAncestor(Node node, Node dir)
    {
        if (!node.IsDir)
        {
            return false;
        }
        var at = dir;
        while (true)
        {
            if (at.Ino == node.Ino)
            {
                return true;
            }
            if (at.Ino == Fs.Protocol.FuseConstants.RootId || !_nodes.TryGetValue(at.Dir!.Parent, out at!))
            {
                return false;
            }
        }
    }

    private async ValueTask<FsResult<T>> GatedAsync<T>(string op, string? name, CancellationToken ct, Func<FsResult<T>> body)
    {
        await Gate!(op, name, ct);
        return body();
    }
}
