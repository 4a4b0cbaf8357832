"""The package's layers only point down, and no two modules import each other in a circle.

    tools -> apis -> (engine, analysis, visualization, deployment, benchmark, testing)
          -> models -> models.layers -> (utils, registry, datasets, version)

Read from the source (``ast``), every import counted, also those inside functions: an
import that reaches a higher layer, or a cycle, fails here with the modules named.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'mmfec'
# Higher number = higher layer. A module belongs to the longest prefix listed.
LAYERS = {
    'mmfec.apis': 5,
    'mmfec.engine': 4, 'mmfec.analysis': 4, 'mmfec.visualization': 4,
    'mmfec.deployment': 4, 'mmfec.benchmark': 4, 'mmfec.testing': 4,
    'mmfec.models': 3,
    'mmfec.models.layers': 2,
    'mmfec.utils': 1, 'mmfec.registry': 1, 'mmfec.datasets': 1, 'mmfec.version': 1,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def _layer(module: str):
    best = max((p for p in LAYERS if module == p or module.startswith(p + '.')),
               key=len, default=None)
    return None if best is None else LAYERS[best]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ''
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def _own_modules():
    return {_module_name(p): p for p in PACKAGE.rglob('*.py')
            if '.mim' not in p.parts}


def _imports():
    """``{module: {imported mmfec module, ...}}`` for every module of the package."""
    modules = _own_modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == '__init__.py'
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                found = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules
                         else base for alias in node.names]
            else:
                continue
            targets.update(t for t in found if t == 'mmfec' or t.startswith('mmfec.'))
        targets.discard(name)
        graph[name] = {t if t in modules else t.rpartition('.')[0] for t in targets}
    return graph


def test_no_import_points_to_a_higher_layer():
    upward = []
    for module, targets in _imports().items():
        if module == 'mmfec':
            continue  # the package's own __init__ wires everything together
        own = _layer(module)
        for target in targets:
            if target == 'mmfec':
                upward.append(f'{module} imports the package root mmfec')
                continue
            other = _layer(target)
            if own is not None and other is not None and other > own:
                upward.append(f'{module} (layer {own}) imports {target} (layer {other})')
    assert upward == [], '\n'.join(sorted(upward))


def test_no_import_cycles():
    graph = _imports()
    graph.pop('mmfec', None)
    # A package's __init__ re-exports its children: the edge package -> child is not a
    # dependency of the child's on anything, so only count it the other way.
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 'open'
        for target in sorted(graph.get(node, ())):
            if target.startswith(node + '.'):
                continue  # a package importing its own submodule
            if state.get(target) == 'open':
                cycles.append(' -> '.join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], '\n'.join(cycles)


# Packages a function may import when it needs them: mmfec works without each of them.
OPTIONAL_PACKAGES = {
    'mmdet': 'the det extra', 'mmseg': 'the seg extra', 'mmpretrain': 'the cls extra',
    'onnx': 'the deploy extra', 'onnxruntime': 'the deploy extra',
    'onnxscript': 'the deploy extra', 'onnx_ir': 'the deploy extra (comes with onnxscript)',
    'torchvision': 'not a dependency: the benchmark\'s ResNet-50 where mmdet is missing',
    'pavi': "mmengine's optional pavi:// checkpoint backend",
}
# Own modules a function may still import, and why.
LAZY_OWN_IMPORTS = {
    # FECImageClassifier subclasses mmpretrain's ImageClassifier: built on first use
    ('mmfec.models', '_fec_image_classifier'): 'mmpretrain is optional',
}


def _imports_inside_functions(path: Path, name: str):
    """``(function, imported module)`` for every import inside a function of ``path``."""
    is_package = path.name == '__init__.py'
    for function in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                yield function.name, _resolve(name, is_package, node)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield function.name, alias.name


def _late_imports(files):
    late = []
    for name, path in files.items():
        for function, target in _imports_inside_functions(path, name):
            if target.split('.')[0] in OPTIONAL_PACKAGES:
                continue
            if (name, function) in LAZY_OWN_IMPORTS:
                continue
            late.append(f'{name}.{function} imports {target}')
    return sorted(set(late))


def test_package_imports_only_optional_packages_inside_functions():
    assert _late_imports(_own_modules()) == []


def test_tools_import_only_optional_packages_inside_functions():
    tools = {'.'.join(p.relative_to(ROOT).with_suffix('').parts): p
             for p in (ROOT / 'tools').rglob('*.py')}
    assert _late_imports(tools) == []
