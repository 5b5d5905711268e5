# Attention similarity, the reuse planner and the planned-checkpoint rewrite
# (native build only: they add no kernel of their own).
# With them, the trained masked LM's held-out loss under each product backend
# (test_trained_mlm.cpp), which shares the fixture.
reuseformer_test(tests_planner SOURCES test_planner.cpp test_trained_mlm.cpp FLAGS ${FLAGS_native})

# reuseformer-plan run as a program (built with the examples and tools).
if(TARGET reuseformer-plan)
  reuseformer_test(tests_plan_tool SOURCES test_plan_tool.cpp FLAGS ${FLAGS_native})
  target_compile_definitions(tests_plan_tool PRIVATE REUSEFORMER_PLAN="$<TARGET_FILE:reuseformer-plan>")
  add_dependencies(tests_plan_tool reuseformer-plan)
endif()
