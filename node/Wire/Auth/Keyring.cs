using System.Text;

namespace Appliance.Wire.Auth;

/// <summary>One entity of a keyring: its name (`client.admin`, `osd.3`, `mon.a`), secret and capabilities.</summary>
public sealed record KeyringEntry(string Entity, Secret Key, IReadOnlyDictionary<string, string> Caps)
{
    public EntityCaps ParsedCaps() => new(Caps);
}

/// <summary>
/// A keyring in Ceph's file format:
/// <code>
/// [client.admin]
///     key = BASE64
///     caps mon = "allow *"
/// </code>
/// Files are written with mode 0600 (owner only), replaced atomically, and their secrets never appear in messages.
/// </summary>
public sealed class Keyring
{
    private readonly Dictionary<string, KeyringEntry> _entries = new(StringComparer.Ordinal);

    public IReadOnlyCollection<KeyringEntry> Entries => _entries.Values;

    public KeyringEntry? Find(string entity) => _entries.GetValueOrDefault(entity);

    public void Add(KeyringEntry entry)
    {
        ValidateEntityName(entry.Entity);
        _ = entry.ParsedCaps(); // refuse bad caps at the door
        _entries[entry.Entity] = entry;
    }

    public bool Remove(string entity) => _entries.Remove(entity);

    /// <summary>`type.id` with type one of client, osd, mon, mgr and a non-empty id of [A-Za-z0-9_-.].</summary>
    public static void ValidateEntityName(string entity)
    {
        var dot = entity.IndexOf('.', StringComparison.Ordinal);
        var ok = dot > 0 && dot < entity.Length - 1 && entity.Length <= 128
            && entity[..dot] is "client" or "osd" or "mon" or "mgr"
            && entity[(dot + 1)..].All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.');
        if (!ok)
        {
            throw new FormatException($"'{entity}' is not an entity name; write TYPE.ID such as client.admin, osd.3 or mon.a");
        }
    }

    public static Keyring Parse(string text, string source = "keyring")
    {
        var ring = new Keyring();
        string? entity = null;
        Secret? key = null;
        var caps = new Dictionary<string, string>(StringComparer.Ordinal);
        var lineNo = 0;
        void Flush()
        {
            if (entity is null)
            {
                return;
            }
            if (key is null)
            {
                throw new FormatException($"{source}: [{entity}] has no key line");
            }
            ring.Add(new KeyringEntry(entity, key, new Dictionary<string, string>(caps)));
            entity = null;
            key = null;
            caps.Clear();
        }
        foreach (var rawLine in text.Split('\n'))
        {
            lineNo++;
            var line = rawLine.Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }
            if (line[0] == '[')
            {
                Flush();
                if (line[^1] != ']')
                {
                    throw new FormatException($"{source}:{lineNo}: section header must end with ']'");
                }
                entity = line[1..^1].Trim();
                ValidateEntityName(entity);
                continue;
            }
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (entity is null || eq < 0)
            {
                throw new FormatException($"{source}:{lineNo}: expected '[entity]' or 'name = value'");
            }
            var name = line[..eq].Trim();
            var value = line[(eq + 1)..].Trim().Trim('"');
            if (name == "key")
            {
                try
                {
                    key = Secret.FromBase64(value);
                }
                catch (FormatException)
                {
                    // The bad value itself is not quoted: it may be a real secret with a typo.
                    throw new FormatException($"{source}:{lineNo}: the key of [{entity}] is not a 32-byte base64 key");
                }
            }
            else if (name.StartsWith("caps ", StringComparison.Ordinal))
            {
                caps[name[5..].Trim()] = value;
            }
            else
            {
                throw new FormatException($"{source}:{lineNo}: unknown setting '{name}' (expected key or caps SERVICE)");
            }
        }
        Flush();
        return ring;
    }

    public string Format()
    {
        var sb = new StringBuilder();
        foreach (var e in _entries.Values.OrderBy(e => e.Entity, StringComparer.Ordinal))
        {
            sb.Append('[').Append(e.Entity).Append("]\n");
            sb.Append("\tkey = ").Append(e.Key.ToBase64()).Append('\n');
            foreach (var (service, cap) in e.Caps.OrderBy(c => c.Key, StringComparer.Ordinal))
            {
                sb.Append("\tcaps ").Append(service).Append(" = \"").Append(cap).Append("\"\n");
            }
        }
        return sb.ToString();
    }

    public static Keyring Load(string path) => Parse(File.ReadAllText(path), path);

    /// <summary>Writes the keyring with mode 0600 through a temporary file and a rename, so a reader never sees a
    /// half-written keyring and no other user can ever read it.</summary>
    public void Save(string path)
    {
        var temp = path + ".tmp-" + Environment.ProcessId;
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        using (var stream = new FileStream(temp, options))
        {
            stream.Write(Encoding.UTF8.GetBytes(Format()));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
